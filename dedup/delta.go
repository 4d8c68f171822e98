package dedup

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"

	"github.com/lockstep/lockstep/statemachine"
	"github.com/lockstep/lockstep/storage"
)

// The table is part of the state checkpoint replication transfers: a
// retried request must be recognized by a backup promoted to primary just
// as under operation replication. A delta therefore carries the records of
// every client whose record changed, then the inner machine's delta.

// innerTracker returns the wrapped machine's delta support, or an error.
func (m *Machine) innerTracker() (statemachine.DeltaTracker, error) {
	t, ok := m.StateMachine.(statemachine.DeltaTracker)
	if !ok {
		return nil, fmt.Errorf("lockstep: %T cannot be replicated by state transfer", m.StateMachine)
	}
	return t, nil
}

// TrackChanges starts or stops recording what Apply changes, here and in
// the inner machine.
func (m *Machine) TrackChanges(on bool) {
	if t, err := m.innerTracker(); err == nil {
		t.TrackChanges(on)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dirty = nil
	if on {
		m.dirty = map[string]bool{}
	}
}

// DirtyBytes estimates the size of the next delta.
func (m *Machine) DirtyBytes() int {
	n := 0
	if t, err := m.innerTracker(); err == nil {
		n = t.DirtyBytes()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for c := range m.dirty {
		n += len(c) + len(m.table[c].reply) + 16
	}
	return n
}

// TakeDelta returns the changed table records and the inner delta as one
// Update.
func (m *Machine) TakeDelta() (statemachine.Update, error) {
	t, err := m.innerTracker()
	if err != nil {
		return nil, err
	}
	inner, err := t.TakeDelta()
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	b := []byte{tagDelta}
	b = binary.AppendUvarint(b, uint64(len(m.dirty)))
	// In client order, so that the same changes give the same bytes, as
	// the inner delta does: a simulation replays a seed byte for byte.
	for _, c := range slices.Sorted(maps.Keys(m.dirty)) {
		r, ok := m.table[c]
		if !ok {
			r = record{} // evicted since: num 0 tells the backup to forget it
		}
		b = appendRecord(b, c, r)
	}
	if m.dirty != nil {
		clear(m.dirty)
	}
	m.mu.Unlock()
	return append(b, inner...), nil
}

func appendRecord(b []byte, client string, r record) []byte {
	b = binary.AppendUvarint(b, uint64(len(client)))
	b = append(b, client...)
	b = binary.AppendUvarint(b, r.num)
	b = binary.AppendUvarint(b, r.seq)
	b = binary.AppendUvarint(b, uint64(len(r.reply)))
	return append(b, r.reply...)
}

// applyDelta installs a delta's records and its inner delta at seq. A
// durable table writes the records, and the evictions they cause, in the
// inner delta's batch.
func (m *Machine) applyDelta(seq uint64, b []byte) error {
	recs, inner, err := decodeDeltaRecords(b)
	if err != nil {
		return err
	}
	m.mu.Lock()
	evict := m.evictionsLocked(recs)
	m.mu.Unlock()
	if m.durable != nil {
		_, err = m.durable.ApplyWithMeta(seq, inner, nil, func([]byte) []storage.Op {
			return deltaOps(recs, evict)
		})
	} else {
		_, err = m.StateMachine.Apply(seq, inner, nil)
	}
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// The records are the primary's: they are not marked dirty again (a
	// primary applies its own empty checkpoint too). The evictions are
	// this replica's own changes.
	for c, r := range recs {
		if r.num == 0 {
			delete(m.table, c)
		} else {
			m.table[c] = r
		}
	}
	for _, c := range evict {
		m.dropLocked(c)
	}
	return nil
}

// decodeDeltaRecords splits a delta into its records, keyed by client,
// and the inner delta.
func decodeDeltaRecords(b []byte) (map[string]record, []byte, error) {
	d := &deltaReader{b: b}
	n := d.uvarint()
	if n > uint64(len(b)) {
		return nil, nil, fmt.Errorf("%w: dedup delta of %d records in %d bytes", statemachine.ErrCorruptUpdate, n, len(b))
	}
	recs := make(map[string]record, n)
	for range n {
		c := string(d.bytes())
		num, seq := d.uvarint(), d.uvarint()
		recs[c], _ = newRecord(num, seq, d.bytes())
	}
	if d.bad {
		return nil, nil, fmt.Errorf("%w: dedup delta records", statemachine.ErrCorruptUpdate)
	}
	return recs, d.b, nil
}

// deltaOps writes a delta's records to the store, in client order so the
// same delta gives the same batch, and deletes the clients it evicts.
func deltaOps(recs map[string]record, evict []string) []storage.Op {
	ops := make([]storage.Op, 0, len(recs)+len(evict))
	for _, c := range slices.Sorted(maps.Keys(recs)) {
		r := recs[c]
		if r.num == 0 {
			ops = append(ops, deleteRecordOp(c))
			continue
		}
		_, v := newRecord(r.num, r.seq, r.reply)
		ops = append(ops, setRecordOp(c, v))
	}
	for _, c := range evict {
		ops = append(ops, deleteRecordOp(c))
	}
	return ops
}

// deltaReader decodes a delta; any malformed field sets bad.
type deltaReader struct {
	b   []byte
	bad bool
}

func (d *deltaReader) uvarint() uint64 {
	v, k := binary.Uvarint(d.b)
	if k <= 0 {
		d.bad, d.b = true, nil
		return 0
	}
	d.b = d.b[k:]
	return v
}

func (d *deltaReader) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.bad, d.b = true, nil
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// SpeculativeSeq is the inner machine's: reads never see the table.
func (m *Machine) SpeculativeSeq(args [][]byte) uint64 {
	if t, err := m.innerTracker(); err == nil {
		return t.SpeculativeSeq(args)
	}
	return m.AppliedSeq()
}

// Committed passes the commit point to the inner machine.
func (m *Machine) Committed(seq uint64) {
	if t, err := m.innerTracker(); err == nil {
		t.Committed(seq)
	}
}
