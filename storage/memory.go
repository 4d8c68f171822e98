package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
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
	c      *cell
}

// cell holds a key's entry. The tree orders keys; the cell is shared by the
// tree item and the hash index, so overwriting an existing key is a map
// lookup and an assignment instead of a tree search.
type cell struct{ e Entry }

// item builds the tree item, or the search probe, for key.
func item(key []byte, c *cell) memItem {
	var pad [16]byte
	copy(pad[:], key)
	return memItem{p0: binary.BigEndian.Uint64(pad[:8]), p1: binary.BigEndian.Uint64(pad[8:]), key: key, c: c}
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
	mu    sync.RWMutex
	tree  *btree.BTreeG[memItem]
	index map[string]*cell
	// views counts open snapshots. While any is open, cells are never
	// changed in place (an open view's clone of the tree shares them):
	// an overwrite gets a new cell, replaced in the tree copy-on-write.
	views int
	// meta is the metadata namespace. No View reads it, so it is changed
	// in place whatever views are open.
	meta   map[string][]byte
	stats  Stats
	seq    uint64
	closed bool
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{tree: btree.NewG(memDegree, memLess), index: map[string]*cell{}, meta: map[string][]byte{}}
}

// Get returns the entry for key. It allocates nothing: the returned slices
// are the ones the store holds.
func (m *Memory) Get(key []byte) (Entry, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return Entry{}, false, ErrClosed
	}
	c, ok := m.index[string(key)]
	if !ok {
		return Entry{}, false, nil
	}
	return c.e, true, nil
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
	if err := b.checkSeq(m.seq); err != nil {
		return err
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
		m.set(op.Key, op.Entry)
	case OpDelete:
		if c, ok := m.index[string(op.Key)]; ok {
			delete(m.index, string(op.Key))
			m.tree.Delete(item(op.Key, nil))
			m.stats.remove(c.e.ExpireAt)
		}
	case OpClear:
		// Clear(false) drops the root instead of recycling nodes, which
		// would be unsafe while a Snapshot's clone still shares them.
		m.tree.Clear(false)
		m.index = map[string]*cell{}
		m.stats = Stats{}
	case OpSetMeta:
		m.meta[string(op.Key)] = op.Entry.Value
	case OpDeleteMeta:
		delete(m.meta, string(op.Key))
	case OpClearMeta:
		clear(m.meta)
	}
}

// set stores e under key: in place when the key exists and no snapshot
// shares its cell, else in a new cell indexed in the map and the tree.
func (m *Memory) set(key []byte, e Entry) {
	m.stats.add(e.ExpireAt)
	if c, ok := m.index[string(key)]; ok {
		m.stats.remove(c.e.ExpireAt)
		if m.views == 0 {
			c.e = e
			return
		}
		c = &cell{e: e}
		m.index[string(key)] = c
		m.tree.ReplaceOrInsert(item(key, c))
		return
	}
	c := &cell{e: e}
	m.index[string(key)] = c
	m.tree.ReplaceOrInsert(item(key, c))
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
	t.AscendGreaterOrEqual(item(start, nil), func(it memItem) bool {
		return fn(it.key, it.c.e)
	})
}

// ScanMeta calls fn for each metadata key with prefix in ascending order.
// The namespace is a map, so it sorts the matching keys first: it is read
// when a machine starts, not on a hot path.
func (m *Memory) ScanMeta(prefix []byte, fn func(key, value []byte) bool) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return ErrClosed
	}
	keys := make([]string, 0, len(m.meta))
	for k := range m.meta {
		if strings.HasPrefix(k, string(prefix)) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !fn([]byte(k), m.meta[k]) {
			break
		}
	}
	return nil
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
	m.views++
	return &memView{m: m, tree: m.tree.Clone(), stats: m.stats, seq: m.seq}, nil
}

// Clone returns an independent copy of the store: its entries and
// metadata (values copied), stats and applied seq. It costs O(n); the whole-node
// simulation keeps one as a node's disk at every Sync, which is what a
// crash leaves behind.
func (m *Memory) Clone() *Memory {
	m.mu.RLock()
	defer m.mu.RUnlock()
	c := NewMemory()
	m.tree.Ascend(func(it memItem) bool {
		c.set(bytes.Clone(it.key), Entry{Value: bytes.Clone(it.c.e.Value), ExpireAt: it.c.e.ExpireAt})
		return true
	})
	for k, v := range m.meta {
		c.meta[k] = bytes.Clone(v)
	}
	c.seq, c.closed = m.seq, m.closed
	return c
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
	m.index = nil
	m.meta = nil
	return nil
}

// memView is a Memory snapshot. Nothing writes to its tree, so reads need
// no lock and Scan's callback may do anything, including reading the store.
type memView struct {
	m      *Memory
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
	v.m.mu.Lock()
	v.m.views--
	v.m.mu.Unlock()
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
		case OpSet, OpDelete, OpClear, OpSetMeta, OpDeleteMeta, OpClearMeta:
		default:
			return fmt.Errorf("%w: op %d has kind %d", ErrBadOp, i, ops[i].Kind)
		}
	}
	return nil
}
