package storage

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble"
)

// Apply commits b as one pebble batch that also carries the new state record
// (applied seq and counters), so a crash keeps all of b with its seq or none
// of it. The commit uses pebble.NoSync: b is visible when Apply returns and
// durable after the next Sync.
func (p *Pebble) Apply(b *Batch) error {
	if err := checkOps(b.Ops); err != nil {
		return err
	}
	p.life.RLock()
	defer p.life.RUnlock()
	if p.closed {
		return ErrClosed
	}
	if err := p.failure(); err != nil {
		return err
	}
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	cur := p.state.Load()
	if err := b.checkSeq(cur.seq); err != nil {
		return err
	}
	pb := p.db.NewBatch()
	defer pb.Close()
	s := stager{p: p, pb: pb, stats: cur.stats}
	if len(b.Ops) > 1 {
		s.overlay = make(map[string]prevEntry, len(b.Ops))
	}
	for i := range b.Ops {
		if err := s.stage(&b.Ops[i]); err != nil {
			return err
		}
	}
	next := &pebbleState{seq: b.Seq, stats: s.stats}
	d := pb.SetDeferred(len(keyState), stateLen)
	copy(d.Key, keyState)
	encodeState(d.Value, next)
	if err := d.Finish(); err != nil {
		return fmt.Errorf("lockstep: storage apply: %w", err)
	}
	// Sync's bookkeeping assumes seqs only grow, so a Replace batch, which
	// may lower the seq, is made durable here and recorded as synced.
	commit := func() error { return pb.Commit(pebble.NoSync) }
	if b.Replace {
		commit = func() error { return commitSync(p.db, pb) }
	}
	if err := commit(); err != nil {
		return p.fail(fmt.Errorf("apply seq %d: %w", b.Seq, err))
	}
	p.state.Store(next)
	if b.Replace {
		p.syncedSeq.Store(b.Seq)
	}
	return nil
}

// prevEntry is what the counters need to know about a key's entry before an
// op replaces it.
type prevEntry struct {
	present bool
	expires bool
}

// stager writes one Batch's ops into a pebble batch and keeps the counters.
//
// Counting needs each touched key's previous entry. The DB answers for keys
// the batch has not touched yet; overlay answers for those it has (MSET k a
// k b must count k once), and after an OpClear every untouched key is
// absent. overlay is nil for single-op batches, which need no memory.
type stager struct {
	p       *Pebble
	pb      *pebble.Batch
	stats   Stats
	cleared bool
	overlay map[string]prevEntry
}

func (s *stager) stage(op *Op) error {
	switch op.Kind {
	case OpClear:
		if err := s.pb.DeleteRange(userKeyStart, userKeyEnd, nil); err != nil {
			return fmt.Errorf("lockstep: storage clear: %w", err)
		}
		s.stats = Stats{}
		s.cleared = true
		clear(s.overlay)
		return nil
	case OpSetMeta, OpDeleteMeta, OpClearMeta:
		return s.stageMeta(op)
	}
	prev, err := s.prev(op)
	if err != nil {
		return err
	}
	if prev.present {
		s.stats.remove(expireFlag(prev.expires))
	}
	if op.Kind == OpDelete {
		s.record(op.Key, prevEntry{})
		if !prev.present {
			return nil // nothing to delete; skip the tombstone
		}
		d := s.pb.DeleteDeferred(1 + len(op.Key))
		putUserKey(d.Key, op.Key)
		return d.Finish()
	}
	e := &op.Entry
	s.stats.add(e.ExpireAt)
	s.record(op.Key, prevEntry{present: true, expires: e.ExpireAt != 0})
	d := s.pb.SetDeferred(1+len(op.Key), expireLen+len(e.Value))
	putUserKey(d.Key, op.Key)
	binary.BigEndian.PutUint64(d.Value, uint64(e.ExpireAt))
	copy(d.Value[expireLen:], e.Value)
	return d.Finish()
}

// stageMeta writes a metadata op. Metadata is not counted in Stats, so it
// needs no previous entry and a delete always writes its tombstone.
func (s *stager) stageMeta(op *Op) error {
	n := len(metaKeyStart) + len(op.Key)
	switch op.Kind {
	case OpSetMeta:
		d := s.pb.SetDeferred(n, len(op.Entry.Value))
		copy(d.Key[copy(d.Key, metaKeyStart):], op.Key)
		copy(d.Value, op.Entry.Value)
		return d.Finish()
	case OpDeleteMeta:
		d := s.pb.DeleteDeferred(n)
		copy(d.Key[copy(d.Key, metaKeyStart):], op.Key)
		return d.Finish()
	}
	if err := s.pb.DeleteRange(metaKeyStart, metaKeyEnd, nil); err != nil {
		return fmt.Errorf("lockstep: storage clear meta: %w", err)
	}
	return nil
}

// prev returns the entry of op's key as of the ops staged so far: from
// the batch's own earlier ops, from op's hint of what it held before the
// batch, or read from the DB.
func (s *stager) prev(op *Op) (prevEntry, error) {
	key := op.Key
	if e, ok := s.overlay[string(key)]; ok {
		return e, nil
	}
	if s.cleared {
		return prevEntry{}, nil
	}
	switch op.Prev {
	case PrevAbsent:
		return prevEntry{}, nil
	case PrevPresent:
		return prevEntry{present: true}, nil
	case PrevExpiring:
		return prevEntry{present: true, expires: true}, nil
	}
	s.p.keyBuf = append(append(s.p.keyBuf[:0], prefixUser), key...)
	v, closer, err := s.p.db.Get(s.p.keyBuf)
	if errors.Is(err, pebble.ErrNotFound) {
		return prevEntry{}, nil
	}
	if err != nil {
		return prevEntry{}, fmt.Errorf("lockstep: storage apply read: %w", err)
	}
	defer closer.Close()
	e, err := decodeEntry(key, v)
	if err != nil {
		return prevEntry{}, err
	}
	return prevEntry{present: true, expires: e.ExpireAt != 0}, nil
}

func (s *stager) record(key []byte, e prevEntry) {
	if s.overlay != nil {
		s.overlay[string(key)] = e
	}
}

// expireFlag maps a has-expiry flag back to an ExpireAt that Stats.remove
// counts the same way.
func expireFlag(expires bool) int64 {
	if expires {
		return 1
	}
	return 0
}

func putUserKey(dst, key []byte) {
	dst[0] = prefixUser
	copy(dst[1:], key)
}

// encodeState writes st into dst, which has stateLen bytes.
func encodeState(dst []byte, st *pebbleState) {
	binary.BigEndian.PutUint64(dst, st.seq)
	binary.BigEndian.PutUint64(dst[8:], uint64(st.stats.Keys))
	binary.BigEndian.PutUint64(dst[16:], uint64(st.stats.Expires))
}
