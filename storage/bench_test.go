package storage

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/vfs"
)

const benchKeys = 10000

func benchKey(i int) []byte { return fmt.Appendf(nil, "key:%08d", i%benchKeys) }

// fill loads benchKeys 100-byte values and returns the next seq.
func fill(b *testing.B, s Store) uint64 {
	b.Helper()
	val := make([]byte, 100)
	var ops []Op
	for i := range benchKeys {
		ops = append(ops, Op{Kind: OpSet, Key: benchKey(i), Entry: Entry{Value: val}})
	}
	apply(b, s, 1, ops...)
	return 2
}

func benchGet(b *testing.B, s Store) {
	fill(b, s)
	keys := make([][]byte, benchKeys)
	for i := range keys {
		keys[i] = benchKey(i * 7919) // a stride, so neighbours are not hit in turn
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok, err := s.Get(keys[i%benchKeys]); !ok || err != nil {
				b.Errorf("Get %q: %v %v", keys[i%benchKeys], ok, err)
				return
			}
			i++
		}
	})
}

func BenchmarkMemoryGet(b *testing.B) {
	s := NewMemory()
	defer s.Close()
	benchGet(b, s)
}

func BenchmarkPebbleGet(b *testing.B) {
	s := openPebble(b, b.TempDir(), PebbleOptions{CacheSize: 64 << 20})
	defer closePebble(b, s)
	benchGet(b, s)
}

func BenchmarkMemoryApply(b *testing.B) {
	s := NewMemory()
	defer s.Close()
	seq := fill(b, s)
	val := make([]byte, 100)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		op := Op{Kind: OpSet, Key: benchKey(i), Entry: Entry{Value: val}}
		if err := s.Apply(&Batch{Seq: seq, Ops: []Op{op}}); err != nil {
			b.Fatal(err)
		}
		seq++
	}
}

// BenchmarkPebbleApplySync has many goroutines each Apply a batch and then
// Sync it, as a replica's request handlers do under fsync=always. The
// fsyncs/op metric counts WAL fsyncs per Sync call: group commit keeps it
// well below 1 when syncers overlap.
func BenchmarkPebbleApplySync(b *testing.B) {
	for _, par := range []int{1, 16} {
		b.Run(fmt.Sprintf("syncers=%dxGOMAXPROCS", par), func(b *testing.B) {
			fs := &countingFS{FS: vfs.Default}
			s := openPebble(b, b.TempDir(), PebbleOptions{FS: fs})
			defer closePebble(b, s)
			var (
				mu  sync.Mutex // batches must reach Apply in seq order
				seq uint64
			)
			val := make([]byte, 100)
			fs.syncs.Store(0)
			b.ReportAllocs()
			b.SetParallelism(par)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					mu.Lock()
					seq++
					op := Op{Kind: OpSet, Key: benchKey(int(seq)), Entry: Entry{Value: val}}
					err := s.Apply(&Batch{Seq: seq, Ops: []Op{op}})
					mu.Unlock()
					if err == nil {
						err = s.Sync()
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(fs.syncs.Load())/float64(b.N), "fsyncs/op")
		})
	}
}

// countingFS counts fsyncs of WAL files (Sync and SyncData).
type countingFS struct {
	vfs.FS
	syncs atomic.Int64
}

func (c *countingFS) Create(name string) (vfs.File, error) {
	f, err := c.FS.Create(name)
	return c.wrap(name, f), err
}

func (c *countingFS) ReuseForWrite(oldname, newname string) (vfs.File, error) {
	f, err := c.FS.ReuseForWrite(oldname, newname)
	return c.wrap(newname, f), err
}

func (c *countingFS) wrap(name string, f vfs.File) vfs.File {
	if f == nil || !strings.HasSuffix(name, ".log") {
		return f
	}
	return &countingFile{File: f, syncs: &c.syncs}
}

type countingFile struct {
	vfs.File
	syncs *atomic.Int64
}

func (f *countingFile) Sync() error {
	f.syncs.Add(1)
	return f.File.Sync()
}

// SyncData is what pebble's WAL writer calls on Linux (fdatasync).
func (f *countingFile) SyncData() error {
	f.syncs.Add(1)
	return f.File.SyncData()
}

// BenchmarkMemoryApplyRandom inserts into a store of 100,000 keys with a
// shared prefix, the shape of a benchmark keyspace, where the tree search
// dominates.
func BenchmarkMemoryApplyRandom(b *testing.B) {
	m := NewMemory()
	keys := make([][]byte, 100_000)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "key:%012d", i)
		_ = m.Apply(&Batch{Seq: uint64(i + 1), Ops: []Op{{Kind: OpSet, Key: keys[i], Entry: Entry{Value: []byte("v")}}}})
	}
	seq := uint64(len(keys))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		seq++
		k := keys[(i*7919)%len(keys)]
		_ = m.Apply(&Batch{Seq: seq, Ops: []Op{{Kind: OpSet, Key: k, Entry: Entry{Value: []byte("w")}}}})
	}
}
