package kv

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/lockstep/lockstep/storage"
)

// benchKeys are the keys the benchmarks cycle through, made once so that
// building them is not measured.
func benchKeys(n int) [][]byte {
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = []byte("key:" + strconv.Itoa(100000+i))
	}
	return keys
}

// BenchmarkSetPrepareApply measures one SET through Prepare and Apply on
// the memory store: the write path's share of a SET's cost.
func BenchmarkSetPrepareApply(b *testing.B) {
	m := New(storage.NewMemory(), Options{})
	env := &fakeEnv{now: baseTime, rng: rand.New(rand.NewPCG(1, 1))}
	keys := benchKeys(1024)
	args := [][]byte{[]byte("SET"), nil, []byte("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")}
	out := make([]byte, 0, 64)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		args[1] = keys[i%len(keys)]
		u, err := m.Prepare(args, env)
		if err != nil {
			b.Fatal(err)
		}
		if out, err = m.Apply(uint64(i+1), u, out[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetRead measures one GET through Read on the memory store. It
// should not allocate.
func BenchmarkGetRead(b *testing.B) {
	m := New(storage.NewMemory(), Options{})
	env := &fakeEnv{now: baseTime, rng: rand.New(rand.NewPCG(1, 1))}
	keys := benchKeys(1024)
	for i, k := range keys {
		u, err := m.Prepare([][]byte{[]byte("SET"), k, []byte("value-" + strconv.Itoa(i))}, env)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.Apply(uint64(i+1), u, nil); err != nil {
			b.Fatal(err)
		}
	}
	args := [][]byte{[]byte("GET"), nil}
	out := make([]byte, 0, 64)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		args[1] = keys[i%len(keys)]
		var err error
		if out, err = m.Read(args, baseTime, out[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

func TestHotPathAllocations(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation counts are not meaningful under -race or -short")
	}
	m := New(storage.NewMemory(), Options{})
	env := &fakeEnv{now: baseTime, rng: rand.New(rand.NewPCG(1, 1))}
	set := [][]byte{[]byte("set"), []byte("key"), []byte("value")}
	get := [][]byte{[]byte("GET"), []byte("key")}
	out := make([]byte, 0, 64)
	seq := uint64(0)
	setAllocs := testing.AllocsPerRun(200, func() {
		u, err := m.Prepare(set, env)
		if err != nil {
			t.Fatal(err)
		}
		seq++
		if out, err = m.Apply(seq, u, out[:0]); err != nil {
			t.Fatal(err)
		}
	})
	getAllocs := testing.AllocsPerRun(200, func() {
		var err error
		if out, err = m.Read(get, baseTime, out[:0]); err != nil {
			t.Fatal(err)
		}
	})
	// One for the Update, one for the Batch, and the memory store's own
	// B-tree bookkeeping on insert.
	if setAllocs > 3 {
		t.Errorf("SET Prepare+Apply: %.1f allocations, want at most 3", setAllocs)
	}
	if getAllocs != 0 {
		t.Errorf("GET Read: %.1f allocations, want 0", getAllocs)
	}
}
