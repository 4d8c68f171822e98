package kv

import (
	"bytes"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/lockstep/lockstep/statemachine"
	"github.com/lockstep/lockstep/storage"
)

// storeFactory makes an empty store for one test and arranges its closing.
type storeFactory func(tb testing.TB) storage.Store

// runSuite runs every store-backed test of the package against stores from
// newStore, so each Store implementation gets the same coverage.
func runSuite(t *testing.T, newStore storeFactory) {
	tests := []struct {
		name string
		fn   func(*testing.T, storeFactory)
	}{
		{"Commands", testCommands},
		{"LazyExpiry", testLazyExpiry},
		{"DBSize", testDBSize},
		{"Scan", testScan},
		{"ScanErrors", testScanErrors},
		{"ScanConcurrent", testScanConcurrent},
		{"ScanCursorEviction", testScanCursorEviction},
		{"Determinism", testDeterminism},
		{"SnapshotRoundTrip", testSnapshotRoundTrip},
		{"SnapshotConcurrentApply", testSnapshotConcurrentApply},
		{"RestoreCorrupt", testRestoreCorrupt},
		{"RestoreOlder", testRestoreOlder},
		{"ApplyCorrupt", testApplyCorrupt},
		{"ReadIsolation", testReadIsolation},
		{"Delta", testDelta},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore) })
	}
}

func TestMemory(t *testing.T) { runSuite(t, memStore) }

func memStore(tb testing.TB) storage.Store {
	s := storage.NewMemory()
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func TestPebble(t *testing.T) {
	if testing.Short() {
		t.Skip("pebble suite skipped in -short mode")
	}
	runSuite(t, func(tb testing.TB) storage.Store {
		s, err := storage.OpenPebble(tb.TempDir(), storage.PebbleOptions{CacheSize: 1 << 20})
		if err != nil {
			tb.Fatalf("open pebble: %v", err)
		}
		tb.Cleanup(func() { _ = s.Close() })
		return s
	})
}

// baseTime is the fake clock's start, a plausible Unix time in ms.
const baseTime int64 = 1_700_000_000_000

// fakeEnv is a statemachine.Env with a clock the test moves by hand.
type fakeEnv struct {
	now int64
	rng *rand.Rand
}

func (e *fakeEnv) NowMillis() int64 { return e.now }
func (e *fakeEnv) Rand() uint64     { return e.rng.Uint64() }

// harness drives one Machine the way the runtime does: writes through
// Prepare and Apply with increasing sequence numbers, reads through Read.
type harness struct {
	tb    testing.TB
	store storage.Store
	m     *Machine
	env   *fakeEnv
	seq   uint64
}

func newHarness(tb testing.TB, newStore storeFactory) *harness {
	store := newStore(tb)
	return &harness{
		tb:    tb,
		store: store,
		m:     New(store, Options{Rand: rand.New(rand.NewPCG(1, 2))}),
		env:   &fakeEnv{now: baseTime, rng: rand.New(rand.NewPCG(3, 4))},
	}
}

// do runs one command and returns its raw RESP reply.
func (h *harness) do(args ...string) string {
	h.tb.Helper()
	return string(h.doBytes(toArgs(args)))
}

func (h *harness) doBytes(args [][]byte) []byte {
	h.tb.Helper()
	cmd, ok := h.m.Lookup(strings.ToLower(string(args[0])))
	if ok && cmd.Kind == statemachine.KindRead {
		out, err := h.m.Read(args, h.env.now, nil)
		if err != nil {
			h.tb.Fatalf("Read %q: %v", args, err)
		}
		return out
	}
	u, err := h.m.Prepare(args, h.env)
	if err != nil {
		h.tb.Fatalf("Prepare %q: %v", args, err)
	}
	h.seq++
	out, err := h.m.Apply(h.seq, u, nil)
	if err != nil {
		h.tb.Fatalf("Apply %q: %v", args, err)
	}
	return out
}

func (h *harness) snapshot() []byte {
	h.tb.Helper()
	var buf bytes.Buffer
	if err := h.m.Snapshot(&buf); err != nil {
		h.tb.Fatalf("Snapshot: %v", err)
	}
	return buf.Bytes()
}

func toArgs(args []string) [][]byte {
	out := make([][]byte, len(args))
	for i, a := range args {
		out[i] = []byte(a)
	}
	return out
}

// testSeed returns the seed for a random test: KV_SEED if set, else a
// fresh one. It is logged so a failure can be replayed with KV_SEED=n.
func testSeed(tb testing.TB) uint64 {
	tb.Helper()
	seed := rand.Uint64()
	if s := os.Getenv("KV_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			tb.Fatalf("KV_SEED=%q: %v", s, err)
		}
		seed = v
	}
	tb.Logf("seed %d (replay with KV_SEED=%d go test -run '%s' ./kv)", seed, seed, tb.Name())
	return seed
}

// Reply builders for expected RESP bytes.

const (
	rOK   = "+OK\r\n"
	rNull = "$-1\r\n"
)

func rInt(n int64) string    { return ":" + strconv.FormatInt(n, 10) + "\r\n" }
func rBulk(s string) string  { return "$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n" }
func rErr(msg string) string { return "-" + msg + "\r\n" }
func rSimple(s string) string {
	return "+" + s + "\r\n"
}

func rArray(elems ...string) string {
	return "*" + strconv.Itoa(len(elems)) + "\r\n" + strings.Join(elems, "")
}
