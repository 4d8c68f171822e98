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
type dirtySet struct {
	on      atomic.Bool // checked without the lock: Apply's fast path
	mu      sync.Mutex
	cleared bool           // a FLUSHDB happened: the delta starts with a clear
	keys    map[string]int // key -> size of its last change (key and value)
	bytes   int
}

// TrackChanges starts or stops recording what Apply changes; starting
// forgets anything recorded before.
func (m *Machine) TrackChanges(on bool) {
	d := &m.dirty
	d.mu.Lock()
	defer d.mu.Unlock()
	d.on.Store(on)
	d.cleared, d.keys, d.bytes = false, nil, 0
}

// DirtyBytes estimates the size of the delta TakeDelta would return.
func (m *Machine) DirtyBytes() int {
	m.dirty.mu.Lock()
	defer m.dirty.mu.Unlock()
	return m.dirty.bytes
}

// record notes the ops of one applied batch.
func (d *dirtySet) record(ops []storage.Op) {
	if !d.on.Load() {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.keys == nil {
		d.keys = make(map[string]int)
	}
	for i := range ops {
		op := &ops[i]
		if op.Kind == storage.OpClear {
			d.cleared, d.bytes = true, 0
			clear(d.keys)
			continue
		}
		size := len(op.Key) + len(op.Entry.Value) + 8
		d.bytes += size - d.keys[string(op.Key)]
		d.keys[string(op.Key)] = size
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
