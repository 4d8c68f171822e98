package kv

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/lockstep/lockstep/statemachine"
	"github.com/lockstep/lockstep/storage"
)

// dirtySet records what Apply changed while tracking is on, for
// checkpoint replication: the primary ships the final state of every key
// an epoch touched, not the operations, so many writes to one hot key cost
// one record.
//
// It also remembers which updates are speculative (not yet reported
// Committed) and which keys they wrote, so a read that observes only
// committed state need not wait for the next checkpoint.
type dirtySet struct {
	on      atomic.Bool // checked without the lock: Apply's fast path
	mu      sync.Mutex
	cleared bool           // a FLUSHDB happened: the delta starts with a clear
	keys    map[string]int // key -> size of its last change (key and value)
	bytes   int

	written  map[string]uint64 // key -> seq of its last speculative write
	floor    uint64            // the state tracking started from, until committed
	clearSeq uint64            // a speculative FLUSHDB, until committed
	newest   uint64            // the newest speculative update
}

// TrackChanges starts or stops recording what Apply changes; starting
// forgets anything recorded before.
func (m *Machine) TrackChanges(on bool) {
	d := &m.dirty
	d.mu.Lock()
	defer d.mu.Unlock()
	d.on.Store(on)
	d.cleared, d.keys, d.bytes = false, nil, 0
	d.written, d.clearSeq, d.floor, d.newest = nil, 0, 0, 0
	if on {
		// A replica that starts tracking (a new primary) cannot tell which
		// of the state it holds every backup has: all of it counts as
		// speculative until its first checkpoint commits.
		d.floor = m.store.AppliedSeq()
		d.newest = d.floor
	}
}

// SpeculativeSeq is the newest update not yet reported Committed that a
// read of args could observe (0 if none): the seq its reply must wait for.
// A read of named keys depends on their last writes, a read of everything
// (DBSIZE, SCAN) on the newest update. Without tracking it is 0.
func (m *Machine) SpeculativeSeq(args [][]byte) uint64 {
	d := &m.dirty
	d.mu.Lock()
	defer d.mu.Unlock()
	g := max(d.floor, d.clearSeq)
	sp := m.find(args[0])
	if sp == nil || sp.cmd.FirstKey == 0 {
		return max(g, d.newest)
	}
	last := sp.cmd.LastKey
	if last < 0 {
		last = len(args) + last
	}
	for i := sp.cmd.FirstKey; i <= last && i < len(args); i += max(sp.cmd.KeyStep, 1) {
		g = max(g, d.written[string(args[i])])
	}
	return g
}

// Committed reports that every update up to seq is on every backup: reads
// of what they wrote no longer wait.
func (m *Machine) Committed(seq uint64) {
	d := &m.dirty
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.floor <= seq {
		d.floor = 0
	}
	if d.clearSeq <= seq {
		d.clearSeq = 0
	}
	if d.newest <= seq {
		d.newest = 0
	}
	for k, w := range d.written {
		if w <= seq {
			delete(d.written, k)
		}
	}
}

// DirtyBytes estimates the size of the delta TakeDelta would return.
func (m *Machine) DirtyBytes() int {
	m.dirty.mu.Lock()
	defer m.dirty.mu.Unlock()
	return m.dirty.bytes
}

// record notes the ops of one applied batch, numbered seq.
func (d *dirtySet) record(seq uint64, ops []storage.Op) {
	if !d.on.Load() {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// TakeDelta empties keys, not written: a write whose epoch was cut
	// stays speculative until Committed says its checkpoint is on every
	// backup.
	if d.keys == nil {
		d.keys = make(map[string]int)
	}
	if d.written == nil {
		d.written = make(map[string]uint64)
	}
	d.newest = seq
	for i := range ops {
		op := &ops[i]
		if op.Kind == storage.OpClear {
			d.cleared, d.bytes, d.clearSeq = true, 0, seq
			clear(d.keys)
			continue
		}
		size := len(op.Key) + len(op.Entry.Value) + 8
		d.bytes += size - d.keys[string(op.Key)]
		d.keys[string(op.Key)] = size
		d.written[string(op.Key)] = seq
	}
}

// TakeDelta returns an Update holding the current state of every key
// changed since tracking began or the last TakeDelta (a set, or a delete
// for a key that is gone), preceded by a clear if the state was flushed,
// and forgets them (an Update with no changes if nothing changed). The delta is
// applied with Apply like any Update; it replaces keys wholesale, so
// applying it over a state that already holds some of its changes (a
// snapshot taken mid-epoch) gives the same result. The runtime calls it
// serialized with Apply.
func (m *Machine) TakeDelta() (statemachine.Update, error) {
	d := &m.dirty
	d.mu.Lock()
	keys, cleared := d.keys, d.cleared
	d.keys, d.cleared, d.bytes = nil, false, 0
	d.mu.Unlock()
	ops := make([]storage.Op, 0, len(keys)+1)
	if cleared {
		ops = append(ops, storage.Op{Kind: storage.OpClear})
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	slices.Sort(sorted) // the same changes give the same bytes
	for _, k := range sorted {
		e, ok, err := m.store.Get([]byte(k))
		if err != nil {
			return nil, fmt.Errorf("kv: delta of %q: %w", k, err)
		}
		if ok {
			ops = append(ops, storage.Op{Kind: storage.OpSet, Key: []byte(k), Entry: e})
		} else {
			ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: []byte(k)})
		}
	}
	return encodeUpdate(nil, ops), nil
}
