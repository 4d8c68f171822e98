package storage

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// The conformance suite: every Store implementation must pass it.

func TestMemory(t *testing.T) {
	runStoreSuite(t, func(t *testing.T) Store { return NewMemory() })
}

// runStoreSuite runs the Store contract against stores made by open. Each
// subtest gets a fresh, empty store and closes it.
func runStoreSuite(t *testing.T, open func(t *testing.T) Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"GetSetDelete", testGetSetDelete},
		{"Clear", testClear},
		{"Expiry", testExpiry},
		{"SameKeyTwice", testSameKeyTwice},
		{"Hints", testHints},
		{"Scan", testScan},
		{"Seq", testSeq},
		{"BadOp", testBadOp},
		{"Snapshot", testSnapshot},
		{"BinaryKeys", testBinaryKeys},
		{"GetResultStable", testGetResultStable},
		{"Concurrent", testConcurrent},
		{"Meta", testMeta},
		{"MetaPrefix", testMetaPrefix},
		{"MetaAtomic", testMetaAtomic},
		{"MetaReplace", testMetaReplace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			tc.fn(t, s)
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
		})
	}
	t.Run("Closed", func(t *testing.T) { testClosed(t, open(t)) })
}

func set(k, v string) Op { return Op{Kind: OpSet, Key: []byte(k), Entry: Entry{Value: []byte(v)}} }

func setx(k, v string, exp int64) Op {
	op := set(k, v)
	op.Entry.ExpireAt = exp
	return op
}

func del(k string) Op { return Op{Kind: OpDelete, Key: []byte(k)} }

func clearOp() Op { return Op{Kind: OpClear} }

func apply(t testing.TB, s Store, seq uint64, ops ...Op) {
	t.Helper()
	if err := s.Apply(&Batch{Seq: seq, Ops: ops}); err != nil {
		t.Fatalf("Apply seq %d: %v", seq, err)
	}
}

// wantGet checks key's value, or its absence when want is nil.
func wantGet(t testing.TB, s Store, key string, want *Entry) {
	t.Helper()
	got, ok, err := s.Get([]byte(key))
	if err != nil {
		t.Fatalf("Get %q: %v", key, err)
	}
	switch {
	case want == nil && ok:
		t.Fatalf("Get %q = %q, want absent", key, got.Value)
	case want != nil && !ok:
		t.Fatalf("Get %q absent, want %q", key, want.Value)
	case want != nil && (!bytes.Equal(got.Value, want.Value) || got.ExpireAt != want.ExpireAt):
		t.Fatalf("Get %q = %q@%d, want %q@%d", key, got.Value, got.ExpireAt, want.Value, want.ExpireAt)
	}
}

func ent(v string, exp int64) *Entry { return &Entry{Value: []byte(v), ExpireAt: exp} }

func wantStats(t testing.TB, got, want Stats) {
	t.Helper()
	if got != want {
		t.Fatalf("Stats = %+v, want %+v", got, want)
	}
}

type kv struct {
	key string
	val string
	exp int64
}

type scanner interface {
	Scan(start []byte, fn func(key []byte, e Entry) bool) error
}

// scanAll copies what a scan from start yields, at most limit entries
// (limit < 0 means all).
func scanAll(t testing.TB, s scanner, start []byte, limit int) []kv {
	t.Helper()
	var out []kv
	err := s.Scan(start, func(k []byte, e Entry) bool {
		out = append(out, kv{string(k), string(e.Value), e.ExpireAt})
		return limit < 0 || len(out) < limit
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return out
}

func keysOf(kvs []kv) []string {
	out := make([]string, len(kvs))
	for i, e := range kvs {
		out[i] = e.key
	}
	return out
}

func testGetSetDelete(t *testing.T, s Store) {
	wantGet(t, s, "a", nil)
	apply(t, s, 1, set("a", "1"), set("b", "2"))
	wantGet(t, s, "a", ent("1", 0))
	wantGet(t, s, "b", ent("2", 0))
	wantStats(t, s.Stats(), Stats{Keys: 2})
	apply(t, s, 2, del("a"), del("missing"))
	wantGet(t, s, "a", nil)
	wantGet(t, s, "b", ent("2", 0))
	wantStats(t, s.Stats(), Stats{Keys: 1})
	apply(t, s, 3, set("b", "3"))
	wantGet(t, s, "b", ent("3", 0))
	wantStats(t, s.Stats(), Stats{Keys: 1})
	apply(t, s, 4, set("empty", ""))
	wantGet(t, s, "empty", ent("", 0))
	if s.AppliedSeq() != 4 {
		t.Fatalf("AppliedSeq = %d, want 4", s.AppliedSeq())
	}
}

func testClear(t *testing.T, s Store) {
	apply(t, s, 1, set("a", "1"), setx("b", "2", 99), set("c", "3"))
	apply(t, s, 2, clearOp())
	if got := scanAll(t, s, nil, -1); len(got) != 0 {
		t.Fatalf("scan after clear = %v, want empty", got)
	}
	wantStats(t, s.Stats(), Stats{})
	wantGet(t, s, "b", nil)
	apply(t, s, 3, setx("b", "new", 7))
	wantGet(t, s, "b", ent("new", 7))
	wantStats(t, s.Stats(), Stats{Keys: 1, Expires: 1})
	apply(t, s, 4, clearOp(), clearOp())
	wantStats(t, s.Stats(), Stats{})
	if s.AppliedSeq() != 4 {
		t.Fatalf("AppliedSeq = %d after clear, want 4", s.AppliedSeq())
	}
}

func testExpiry(t *testing.T, s Store) {
	apply(t, s, 1, setx("k", "v", 1700000000123), set("p", "q"))
	wantGet(t, s, "k", ent("v", 1700000000123))
	wantStats(t, s.Stats(), Stats{Keys: 2, Expires: 1})
	// Overwrites move keys in and out of the Expires count.
	apply(t, s, 2, set("k", "v2"))
	wantStats(t, s.Stats(), Stats{Keys: 2, Expires: 0})
	apply(t, s, 3, setx("k", "v3", 5))
	wantStats(t, s.Stats(), Stats{Keys: 2, Expires: 1})
	apply(t, s, 4, setx("k", "v4", 6))
	wantStats(t, s.Stats(), Stats{Keys: 2, Expires: 1})
	apply(t, s, 5, setx("p", "q", -1)) // negative is still an expiry
	wantGet(t, s, "p", ent("q", -1))
	wantStats(t, s.Stats(), Stats{Keys: 2, Expires: 2})
	apply(t, s, 6, del("k"))
	wantStats(t, s.Stats(), Stats{Keys: 1, Expires: 1})
}

func testSameKeyTwice(t *testing.T, s Store) {
	apply(t, s, 1, set("k", "a"), setx("k", "b", 9))
	wantGet(t, s, "k", ent("b", 9))
	wantStats(t, s.Stats(), Stats{Keys: 1, Expires: 1})
	apply(t, s, 2, set("x", "1"), del("x"))
	wantGet(t, s, "x", nil)
	wantStats(t, s.Stats(), Stats{Keys: 1, Expires: 1})
	apply(t, s, 3, del("k"), set("k", "c"))
	wantGet(t, s, "k", ent("c", 0))
	wantStats(t, s.Stats(), Stats{Keys: 1})
	apply(t, s, 4, set("y", "1"), clearOp(), setx("y", "2", 3), set("z", "3"), del("z"), del("z"))
	wantGet(t, s, "y", ent("2", 3))
	wantGet(t, s, "k", nil)
	wantGet(t, s, "z", nil)
	wantStats(t, s.Stats(), Stats{Keys: 1, Expires: 1})
	if got := keysOf(scanAll(t, s, nil, -1)); !slices.Equal(got, []string{"y"}) {
		t.Fatalf("scan = %q, want [y]", got)
	}
}

// testHints: ops that say what their key held (Op.Prev) are counted by
// the hint, except where an earlier op of the batch touched the key or
// cleared the keyspace, which the store knows better.
func testHints(t *testing.T, s Store) {
	hinted := func(op Op, h PrevHint) Op { op.Prev = h; return op }
	apply(t, s, 1, hinted(set("a", "1"), PrevAbsent), hinted(setx("b", "2", 9), PrevAbsent))
	wantStats(t, s.Stats(), Stats{Keys: 2, Expires: 1})
	apply(t, s, 2, hinted(set("b", "3"), PrevExpiring))
	wantStats(t, s.Stats(), Stats{Keys: 2})
	apply(t, s, 3, hinted(del("a"), PrevPresent), hinted(set("a", "4"), PrevPresent))
	wantStats(t, s.Stats(), Stats{Keys: 2})
	apply(t, s, 4, clearOp(), hinted(setx("a", "5", 7), PrevPresent), hinted(del("b"), PrevPresent))
	wantGet(t, s, "b", nil)
	wantStats(t, s.Stats(), Stats{Keys: 1, Expires: 1})
}

func testScan(t *testing.T, s Store) {
	keys := []string{"m", "a", "zz", "b", "ab", "z", "aa", "c"}
	var ops []Op
	for i, k := range keys {
		ops = append(ops, setx(k, "v"+k, int64(i)))
	}
	apply(t, s, 1, ops...)
	sorted := slices.Sorted(slices.Values(keys))
	all := scanAll(t, s, nil, -1)
	if got := keysOf(all); !slices.Equal(got, sorted) {
		t.Fatalf("scan = %q, want %q", got, sorted)
	}
	for i, e := range all {
		if e.val != "v"+e.key || e.exp != int64(slices.Index(keys, e.key)) {
			t.Fatalf("scan entry %d = %+v", i, e)
		}
	}
	if got := keysOf(scanAll(t, s, []byte("ab"), -1)); !slices.Equal(got, []string{"ab", "b", "c", "m", "z", "zz"}) {
		t.Fatalf("scan from ab = %q", got)
	}
	if got := keysOf(scanAll(t, s, []byte("ac"), -1)); !slices.Equal(got, []string{"b", "c", "m", "z", "zz"}) {
		t.Fatalf("scan from ac (absent) = %q", got)
	}
	if got := scanAll(t, s, []byte("zzz"), -1); len(got) != 0 {
		t.Fatalf("scan past the end = %v", got)
	}
	if got := keysOf(scanAll(t, s, []byte("b"), 2)); !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("scan stopped after 2 = %q", got)
	}
	if got := keysOf(scanAll(t, s, nil, 1)); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("scan stopped after 1 = %q", got)
	}
}

func testSeq(t *testing.T, s Store) {
	if s.AppliedSeq() != 0 {
		t.Fatalf("fresh AppliedSeq = %d", s.AppliedSeq())
	}
	if err := s.Apply(&Batch{Seq: 0, Ops: []Op{set("a", "0")}}); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("Apply seq 0 = %v, want ErrOutOfOrder", err)
	}
	apply(t, s, 5, set("a", "5"))
	for _, seq := range []uint64{5, 4, 1} {
		err := s.Apply(&Batch{Seq: seq, Ops: []Op{set("a", "x"), set("b", "x")}})
		if !errors.Is(err, ErrOutOfOrder) {
			t.Fatalf("Apply seq %d after 5 = %v, want ErrOutOfOrder", seq, err)
		}
	}
	wantGet(t, s, "a", ent("5", 0))
	wantGet(t, s, "b", nil)
	wantStats(t, s.Stats(), Stats{Keys: 1})
	apply(t, s, 6) // an empty batch still advances the seq
	if s.AppliedSeq() != 6 {
		t.Fatalf("AppliedSeq = %d, want 6", s.AppliedSeq())
	}
	apply(t, s, 100, set("a", "100"))
	if s.AppliedSeq() != 100 {
		t.Fatalf("AppliedSeq = %d, want 100", s.AppliedSeq())
	}
	testReplace(t, s)
	if s.AppliedSeq() != 100 {
		t.Fatalf("AppliedSeq after the replace tests = %d, want 100", s.AppliedSeq())
	}
}

func testBadOp(t *testing.T, s Store) {
	apply(t, s, 1, set("a", "1"))
	err := s.Apply(&Batch{Seq: 2, Ops: []Op{set("a", "2"), {Kind: 0, Key: []byte("b")}}})
	if !errors.Is(err, ErrBadOp) {
		t.Fatalf("Apply with kind 0 = %v, want ErrBadOp", err)
	}
	wantGet(t, s, "a", ent("1", 0))
	if s.AppliedSeq() != 1 {
		t.Fatalf("AppliedSeq = %d after a rejected batch, want 1", s.AppliedSeq())
	}
}

func testSnapshot(t *testing.T, s Store) {
	apply(t, s, 1, set("a", "1"), setx("b", "2", 5), set("c", "3"))
	v, err := s.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	apply(t, s, 2, set("a", "changed"), del("b"), set("d", "4"))
	apply(t, s, 3, set("e", "5"))
	want := []kv{{"a", "1", 0}, {"b", "2", 5}, {"c", "3", 0}}
	if got := scanAll(t, v, nil, -1); !slices.Equal(got, want) {
		t.Fatalf("view scan = %v, want %v", got, want)
	}
	if v.AppliedSeq() != 1 {
		t.Fatalf("view AppliedSeq = %d, want 1", v.AppliedSeq())
	}
	wantStats(t, v.Stats(), Stats{Keys: 3, Expires: 1})
	apply(t, s, 4, clearOp())
	if got := scanAll(t, v, []byte("b"), -1); !slices.Equal(got, want[1:]) {
		t.Fatalf("view scan from b after clear = %v, want %v", got, want[1:])
	}
	// The view's callback may read the live store.
	err = v.Scan(nil, func(k []byte, _ Entry) bool {
		_, _, gerr := s.Get(k)
		return gerr == nil
	})
	if err != nil {
		t.Fatalf("view scan calling Get: %v", err)
	}
	wantStats(t, s.Stats(), Stats{})
	if err := v.Close(); err != nil {
		t.Fatalf("view Close: %v", err)
	}
	if err := v.Scan(nil, func([]byte, Entry) bool { return true }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Scan on closed view = %v, want ErrClosed", err)
	}
	// A view left open must not stop the store from closing.
	if _, err := s.Snapshot(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
}

// binaryKeys includes the empty key and keys that start with, or look
// like, the bytes a store might use for its own metadata.
var binaryKeys = []string{
	"", "\x00", "\x00\x00", "\x00s", "\x00c", "\x01", "\x01\x00", "\x02",
	"\xff", "\xff\xff", "a", "\x00\xff",
}

func testBinaryKeys(t *testing.T, s Store) {
	var ops []Op
	for i, k := range binaryKeys {
		ops = append(ops, set(k, strconv.Itoa(i)))
	}
	apply(t, s, 7, ops...)
	for i, k := range binaryKeys {
		wantGet(t, s, k, ent(strconv.Itoa(i), 0))
	}
	sorted := slices.Sorted(slices.Values(binaryKeys))
	if got := keysOf(scanAll(t, s, nil, -1)); !slices.Equal(got, sorted) {
		t.Fatalf("scan = %q, want %q", got, sorted)
	}
	if got := keysOf(scanAll(t, s, []byte{}, -1)); !slices.Equal(got, sorted) {
		t.Fatalf("scan from empty key = %q, want %q", got, sorted)
	}
	if got := keysOf(scanAll(t, s, []byte("\x01"), -1)); !slices.Equal(got, []string{"\x01", "\x01\x00", "\x02", "a", "\xff", "\xff\xff"}) {
		t.Fatalf("scan from 0x01 = %q", got)
	}
	wantStats(t, s.Stats(), Stats{Keys: int64(len(binaryKeys))})
	if s.AppliedSeq() != 7 {
		t.Fatalf("AppliedSeq = %d, want 7", s.AppliedSeq())
	}
	apply(t, s, 8, del(""), del("\x00s"))
	wantGet(t, s, "", nil)
	wantGet(t, s, "\x00s", nil)
	wantGet(t, s, "\x00", ent("1", 0))
	apply(t, s, 9, clearOp())
	for _, k := range binaryKeys {
		wantGet(t, s, k, nil)
	}
	if s.AppliedSeq() != 9 {
		t.Fatalf("AppliedSeq = %d after clearing metadata-like keys, want 9", s.AppliedSeq())
	}
	wantStats(t, s.Stats(), Stats{})
}

func testGetResultStable(t *testing.T, s Store) {
	apply(t, s, 1, set("k", "first"))
	e, _, err := s.Get([]byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	apply(t, s, 2, set("k", "second"))
	apply(t, s, 3, del("k"))
	if string(e.Value) != "first" {
		t.Fatalf("earlier Get result changed to %q", e.Value)
	}
}

func testClosed(t *testing.T, s Store) {
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	check := func(name string, err error) {
		t.Helper()
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	_, _, err := s.Get([]byte("a"))
	check("Get", err)
	check("Apply", s.Apply(&Batch{Seq: 1, Ops: []Op{set("a", "1")}}))
	check("Scan", s.Scan(nil, func([]byte, Entry) bool { return true }))
	check("ScanMeta", s.ScanMeta(nil, func(_, _ []byte) bool { return true }))
	check("Sync", s.Sync())
	_, err = s.Snapshot()
	check("Snapshot", err)
	check("Close", s.Close())
}

// testSeed returns the seed for randomized tests: STORAGE_SEED if set, else
// a fresh one. Either way it is logged so a failure can be replayed.
func testSeed(t *testing.T) uint64 {
	seed := rand.Uint64()
	if env := os.Getenv("STORAGE_SEED"); env != "" {
		var err error
		if seed, err = strconv.ParseUint(env, 10, 64); err != nil {
			t.Fatalf("bad STORAGE_SEED %q: %v", env, err)
		}
	}
	run := "^" + strings.ReplaceAll(t.Name(), "/", "$/^") + "$"
	t.Logf("seed %d (replay: STORAGE_SEED=%d go test -run '%s' ./storage)", seed, seed, run)
	return seed
}

// testConcurrent races writers, readers, scanners and snapshots. Every
// batch sets or deletes a pair of keys a/<w>/<j>, b/<w>/<j> together, so a
// reader that ever sees half a batch finds an odd count or unequal values.
// Writers keep going until every reader has made minReads passes, so the
// two overlap even on a store fast enough to finish the writes at once.
func testConcurrent(t *testing.T, s Store) {
	seed := testSeed(t)
	const writers, batches, slots, minReads = 4, 150, 8, 20
	var (
		next, maxOK atomic.Uint64
		pending     atomic.Int64 // readers short of minReads
		writersWG   sync.WaitGroup
		readersWG   sync.WaitGroup
		stop        = make(chan struct{})
		errs        = make(chan error, 64)
	)
	fail := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	for w := range writers {
		writersWG.Add(1)
		go func() {
			defer writersWG.Done()
			more := func(i int) bool { return i < batches || pending.Load() > 0 }
			concurrentWriter(s, rand.New(rand.NewPCG(seed, uint64(w))), w, more, slots, &next, &maxOK, fail)
		}()
	}
	readers := []func(r *rand.Rand){
		func(r *rand.Rand) { concurrentGetter(s, r, writers, slots, fail) },
		func(r *rand.Rand) { concurrentGetter(s, r, writers, slots, fail) },
		func(*rand.Rand) { checkPairs(s, fail) },
		func(*rand.Rand) { concurrentSnapshotter(s, fail) },
	}
	pending.Store(int64(len(readers)))
	for i, read := range readers {
		readersWG.Add(1)
		go func() {
			defer readersWG.Done()
			r := rand.New(rand.NewPCG(seed, uint64(100+i)))
			for n := 1; ; n++ {
				read(r)
				if n == minReads {
					pending.Add(-1)
				}
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
	}
	writersWG.Wait()
	close(stop)
	readersWG.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if maxOK.Load() == 0 || s.AppliedSeq() != maxOK.Load() {
		t.Fatalf("AppliedSeq = %d, highest accepted seq = %d", s.AppliedSeq(), maxOK.Load())
	}
	checkPairs(s, func(err error) { t.Fatal(err) })
	var keys, expires int64
	for _, e := range scanAll(t, s, nil, -1) {
		keys++
		if e.exp != 0 {
			expires++
		}
	}
	wantStats(t, s.Stats(), Stats{Keys: keys, Expires: expires})
}

// concurrentWriter applies batches with seqs drawn from a shared counter.
// Racing writers may reach the store out of order; those batches must fail
// with ErrOutOfOrder and the rest succeed.
func concurrentWriter(s Store, r *rand.Rand, w int, more func(int) bool, slots int, next, maxOK *atomic.Uint64, fail func(error)) {
	for i := 0; more(i); i++ {
		j := r.IntN(slots)
		a, b := fmt.Sprintf("a/%d/%d", w, j), fmt.Sprintf("b/%d/%d", w, j)
		v := fmt.Sprintf("%d.%d", w, i)
		ops := []Op{setx(a, v, int64(i%2)), setx(b, v, int64(i%2))}
		if r.IntN(4) == 0 {
			ops = []Op{del(a), del(b)}
		}
		seq := next.Add(1)
		err := s.Apply(&Batch{Seq: seq, Ops: ops})
		switch {
		case err == nil:
			for old := maxOK.Load(); seq > old && !maxOK.CompareAndSwap(old, seq); old = maxOK.Load() {
			}
		case !errors.Is(err, ErrOutOfOrder):
			fail(fmt.Errorf("writer %d Apply seq %d: %w", w, seq, err))
			return
		}
	}
}

// concurrentGetter reads random keys and checks the counters move as whole
// batches: every batch changes Keys and Expires by an even number.
func concurrentGetter(s Store, r *rand.Rand, writers, slots int, fail func(error)) {
	lastSeq := s.AppliedSeq()
	for range 50 {
		k := fmt.Sprintf("a/%d/%d", r.IntN(writers), r.IntN(slots))
		if _, _, err := s.Get([]byte(k)); err != nil {
			fail(fmt.Errorf("Get %s: %w", k, err))
			return
		}
		if st := s.Stats(); st.Keys%2 != 0 || st.Expires%2 != 0 {
			fail(fmt.Errorf("Stats %+v shows half a batch", st))
			return
		}
		seq := s.AppliedSeq()
		if seq < lastSeq {
			fail(fmt.Errorf("AppliedSeq went back from %d to %d", lastSeq, seq))
			return
		}
		lastSeq = seq
	}
}

// checkPairs scans sc and checks every a/ key has its b/ twin with the same
// entry.
func checkPairs(sc scanner, fail func(error)) int64 {
	seen := make(map[string]kv)
	var n int64
	err := sc.Scan(nil, func(k []byte, e Entry) bool {
		seen[string(k)] = kv{string(k), string(e.Value), e.ExpireAt}
		n++
		return true
	})
	if err != nil {
		fail(fmt.Errorf("Scan: %w", err))
		return n
	}
	for k, e := range seen {
		if k[0] != 'a' {
			continue
		}
		twin, ok := seen["b"+k[1:]]
		if !ok || twin.val != e.val || twin.exp != e.exp {
			fail(fmt.Errorf("scan saw half a batch: %+v vs %+v (present %v)", e, twin, ok))
			return n
		}
	}
	if len(seen)%2 != 0 {
		fail(fmt.Errorf("scan saw %d keys, want an even count", len(seen)))
	}
	return n
}

// concurrentSnapshotter checks a view is consistent with its own Stats.
func concurrentSnapshotter(s Store, fail func(error)) {
	v, err := s.Snapshot()
	if err != nil {
		fail(fmt.Errorf("Snapshot: %w", err))
		return
	}
	defer v.Close()
	seq := v.AppliedSeq()
	if n := checkPairs(v, fail); n != v.Stats().Keys {
		fail(fmt.Errorf("view scanned %d keys, its Stats say %d", n, v.Stats().Keys))
	}
	if v.AppliedSeq() != seq {
		fail(fmt.Errorf("view AppliedSeq moved from %d to %d", seq, v.AppliedSeq()))
	}
}

// TestMemoryOverwriteKeepsSnapshots checks the hash index's in-place
// overwrites against open snapshots: a view keeps the values it was taken
// with through overwrites, deletes and re-sets, and overwrites after the
// view closes are seen by a new one.
func TestMemoryOverwriteKeepsSnapshots(t *testing.T) {
	m := NewMemory()
	seq := uint64(0)
	set := func(k, v string) {
		seq++
		if err := m.Apply(&Batch{Seq: seq, Ops: []Op{{Kind: OpSet, Key: []byte(k), Entry: Entry{Value: []byte(v)}}}}); err != nil {
			t.Fatal(err)
		}
	}
	del := func(k string) {
		seq++
		if err := m.Apply(&Batch{Seq: seq, Ops: []Op{{Kind: OpDelete, Key: []byte(k)}}}); err != nil {
			t.Fatal(err)
		}
	}
	read := func(s interface {
		Scan([]byte, func([]byte, Entry) bool) error
	}) map[string]string {
		out := map[string]string{}
		_ = s.Scan(nil, func(k []byte, e Entry) bool { out[string(k)] = string(e.Value); return true })
		return out
	}
	set("a", "1")
	set("b", "1")
	v1, _ := m.Snapshot()
	set("a", "2")
	del("b")
	set("b", "3")
	set("c", "3")
	if got := read(v1); got["a"] != "1" || got["b"] != "1" || len(got) != 2 {
		t.Fatalf("view after overwrites = %v", got)
	}
	if e, _, _ := m.Get([]byte("a")); string(e.Value) != "2" {
		t.Fatalf("Get(a) = %q", e.Value)
	}
	v1.Close()
	set("a", "4") // in place now: no view shares the cell
	v2, _ := m.Snapshot()
	defer v2.Close()
	if got := read(v2); got["a"] != "4" || got["b"] != "3" || got["c"] != "3" {
		t.Fatalf("second view = %v", got)
	}
	if got := read(m); got["a"] != "4" || len(got) != 3 {
		t.Fatalf("store = %v", got)
	}
	if st := m.Stats(); st.Keys != 3 {
		t.Fatalf("stats %+v", st)
	}
}

// testReplace checks that a Replace batch may go back in seq, must start
// with a clear, and leaves the store where it says (here, back at 100).
func testReplace(t *testing.T, s Store) {
	t.Helper()
	if err := s.Apply(&Batch{Seq: 3, Replace: true, Ops: []Op{set("x", "1")}}); !errors.Is(err, ErrBadOp) {
		t.Fatalf("replace without a clear = %v, want ErrBadOp", err)
	}
	if err := s.Apply(&Batch{Seq: 3, Replace: true, Ops: []Op{clearOp(), set("x", "3")}}); err != nil {
		t.Fatalf("replace back to seq 3: %v", err)
	}
	if s.AppliedSeq() != 3 {
		t.Fatalf("AppliedSeq after replace = %d, want 3", s.AppliedSeq())
	}
	wantGet(t, s, "a", nil)
	wantGet(t, s, "x", ent("3", 0))
	wantStats(t, s.Stats(), Stats{Keys: 1})
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	apply(t, s, 4, set("y", "4"))
	if err := s.Apply(&Batch{Seq: 100, Replace: true, Ops: []Op{clearOp(), set("a", "100")}}); err != nil {
		t.Fatalf("replace forward to seq 100: %v", err)
	}
	wantGet(t, s, "y", nil)
	wantStats(t, s.Stats(), Stats{Keys: 1})
}
