package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/google/btree"
)

// memDegree is the B-tree degree. 32 keeps nodes a few cache lines wide,
// which is what google/btree's own benchmarks favour for small items.
const memDegree = 32

// memItem is one key and its entry as kept in the tree. p0 and p1 hold the
// key's first 16 bytes (zero-padded, big-endian), so most comparisons in
// a tree search are two integer compares on the node's own memory instead
// of a pointer chase to each key: a B-tree search over a large keyspace is
// otherwise dominated by cache misses on keys.
type memItem struct {
	p0, p1 uint64
	key    []byte
	e      Entry
}

// item builds the tree item, or the search probe, for key.
func item(key []byte, e Entry) memItem {
	var pad [16]byte
	copy(pad[:], key)
	return memItem{p0: binary.BigEndian.Uint64(pad[:8]), p1: binary.BigEndian.Uint64(pad[8:]), key: key, e: e}
}

// memLess orders items as bytes.Compare orders their keys: the padded
// prefixes decide unless they are equal, and then the full keys do (which
// also separates "a" from "a\x00").
func memLess(a, b memItem) bool {
	if a.p0 != b.p0 {
		return a.p0 < b.p0
	}
	if a.p1 != b.p1 {
		return a.p1 < b.p1
	}
	return bytes.Compare(a.key, b.key) < 0
}

// Memory is a Store held in an in-memory B-tree. It survives nothing: a
// replica using it relies on its peers to survive a crash.
//
// Memory keeps the slices passed to Apply and hands them back from Get and
// Scan without copying, which is why the Store contract forbids modifying
// them on either side.
type Memory struct {
	mu     sync.RWMutex
	tree   *btree.BTreeG[memItem]
	stats  Stats
	seq    uint64
	closed bool
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{tree: btree.NewG(memDegree, memLess)}
}

// Get returns the entry for key. It allocates nothing: the returned slices
// are the ones the store holds.
func (m *Memory) Get(key []byte) (Entry, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return Entry{}, false, ErrClosed
	}
	it, ok := m.tree.Get(item(key, Entry{}))
	return it.e, ok, nil
}

// Apply applies b under the write lock, so readers see all of it or none.
func (m *Memory) Apply(b *Batch) error {
	if err := checkOps(b.Ops); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if b.Seq <= m.seq {
		return fmt.Errorf("%w: seq %d after %d", ErrOutOfOrder, b.Seq, m.seq)
	}
	for i := range b.Ops {
		m.applyOp(&b.Ops[i])
	}
	m.seq = b.Seq
	return nil
}

// applyOp changes the tree and keeps Stats in step with it. The caller
// holds the write lock.
func (m *Memory) applyOp(op *Op) {
	switch op.Kind {
	case OpSet:
		prev, replaced := m.tree.ReplaceOrInsert(item(op.Key, op.Entry))
		if replaced {
			m.stats.remove(prev.e.ExpireAt)
		}
		m.stats.add(op.Entry.ExpireAt)
	case OpDelete:
		if prev, ok := m.tree.Delete(item(op.Key, Entry{})); ok {
			m.stats.remove(prev.e.ExpireAt)
		}
	case OpClear:
		// Clear(false) drops the root instead of recycling nodes, which
		// would be unsafe while a Snapshot's clone still shares them.
		m.tree.Clear(false)
		m.stats = Stats{}
	}
}

// Scan calls fn for each key >= start in ascending order. fn runs under the
// store's read lock: it must not call back into the store (a concurrent
// Apply waiting for the lock would deadlock a nested read), and a slow fn
// delays every writer. Use Snapshot for long scans.
func (m *Memory) Scan(start []byte, fn func(key []byte, e Entry) bool) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return ErrClosed
	}
	scanTree(m.tree, start, fn)
	return nil
}

func scanTree(t *btree.BTreeG[memItem], start []byte, fn func(key []byte, e Entry) bool) {
	t.AscendGreaterOrEqual(item(start, Entry{}), func(it memItem) bool {
		return fn(it.key, it.e)
	})
}

// Stats counts the keys.
func (m *Memory) Stats() Stats {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.stats
}

// AppliedSeq is the Seq of the last applied Batch.
func (m *Memory) AppliedSeq() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.seq
}

// Sync does nothing: there is no disk to flush.
func (m *Memory) Sync() error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return ErrClosed
	}
	return nil
}

// Durable is false: a crash loses everything.
func (m *Memory) Durable() bool { return false }

// Snapshot returns a view backed by a copy-on-write clone of the tree, so it
// costs O(1) now and later writes copy only the nodes they touch. Clone
// changes the tree's copy-on-write context, hence the write lock.
func (m *Memory) Snapshot() (View, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	return &memView{tree: m.tree.Clone(), stats: m.stats, seq: m.seq}, nil
}

// Close drops the keyspace. Views taken before stay readable.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.closed = true
	m.tree = nil
	return nil
}

// memView is a Memory snapshot. Nothing writes to its tree, so reads need
// no lock and Scan's callback may do anything, including reading the store.
type memView struct {
	tree   *btree.BTreeG[memItem]
	stats  Stats
	seq    uint64
	closed atomic.Bool
}

func (v *memView) Scan(start []byte, fn func(key []byte, e Entry) bool) error {
	if v.closed.Load() {
		return ErrClosed
	}
	scanTree(v.tree, start, fn)
	return nil
}

func (v *memView) Stats() Stats       { return v.stats }
func (v *memView) AppliedSeq() uint64 { return v.seq }

func (v *memView) Close() error {
	if v.closed.Swap(true) {
		return ErrClosed
	}
	return nil
}

// add counts a new key with the given expiry.
func (s *Stats) add(expireAt int64) {
	s.Keys++
	if expireAt != 0 {
		s.Expires++
	}
}

// remove uncounts a key that had the given expiry.
func (s *Stats) remove(expireAt int64) {
	s.Keys--
	if expireAt != 0 {
		s.Expires--
	}
}

// checkOps rejects a batch with an unknown op before anything changes.
func checkOps(ops []Op) error {
	for i := range ops {
		switch ops[i].Kind {
		case OpSet, OpDelete, OpClear:
		default:
			return fmt.Errorf("%w: op %d has kind %d", ErrBadOp, i, ops[i].Kind)
		}
	}
	return nil
}
