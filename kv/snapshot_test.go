package kv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"

	"github.com/lockstep/lockstep/statemachine"
	"github.com/lockstep/lockstep/storage"
)

// fillRandom writes n random keys, some binary, some with empty values,
// some with expiries, and then moves the clock so that some of those have
// expired but are still stored.
func fillRandom(h *harness, rng *rand.Rand, n int) {
	for i := range n {
		key := "key:" + strconv.Itoa(i)
		if i%17 == 0 {
			key = string([]byte{0, byte(i), 0xff, '\r', '\n'})
		}
		val := make([]byte, rng.IntN(40))
		for j := range val {
			val[j] = byte(rng.Uint32())
		}
		args := []string{"SET", key, string(val)}
		switch i % 3 {
		case 1:
			args = append(args, "PX", strconv.Itoa(1+rng.IntN(2000)))
		case 2:
			args = append(args, "EX", strconv.Itoa(1+rng.IntN(100)))
		}
		h.do(args...)
	}
	h.env.now += 1000 // some PX keys are now expired but still stored
}

func testSnapshotRoundTrip(t *testing.T, newStore storeFactory) {
	seed := testSeed(t)
	src := newHarness(t, newStore)
	fillRandom(src, rand.New(rand.NewPCG(seed, 9)), 300)
	snap := src.snapshot()

	dst := newHarness(t, newStore)
	dst.do("SET", "stale", "x") // must be gone after Restore
	if err := dst.m.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if dst.m.AppliedSeq() != src.m.AppliedSeq() {
		t.Fatalf("AppliedSeq after Restore = %d, want %d", dst.m.AppliedSeq(), src.m.AppliedSeq())
	}
	if again := dst.snapshot(); !bytes.Equal(again, snap) {
		t.Fatalf("snapshot of restored machine differs (%d vs %d bytes)", len(again), len(snap))
	}
	dst.env.now = src.env.now
	if got := dst.do("EXISTS", "stale"); got != rInt(0) {
		t.Fatalf("EXISTS stale after Restore = %q", got)
	}
	for i := range 300 {
		key := "key:" + strconv.Itoa(i)
		for _, cmd := range []string{"GET", "PTTL"} {
			if a, b := src.do(cmd, key), dst.do(cmd, key); a != b {
				t.Fatalf("%s %q: source %q, restored %q", cmd, key, a, b)
			}
		}
	}
	if a, b := src.do("DBSIZE"), dst.do("DBSIZE"); a != b {
		t.Fatalf("DBSIZE: source %q, restored %q", a, b)
	}
	// The restored machine continues the history.
	dst.seq = dst.m.AppliedSeq()
	if got := dst.do("SET", "after", "restore"); got != rOK {
		t.Fatalf("SET after Restore = %q", got)
	}
}

// testSnapshotConcurrentApply takes snapshots while updates are applied.
// Update i sets "c" to i and creates "k<i>", so a snapshot claiming seq S
// must hold c = S and exactly the keys k1..kS.
func testSnapshotConcurrentApply(t *testing.T, newStore storeFactory) {
	h := newHarness(t, newStore)
	const updates = 400
	done := make(chan error, 1)
	go func() {
		for i := 1; i <= updates; i++ {
			u, err := h.m.Prepare(toArgs([]string{"MSET", "c", strconv.Itoa(i), "k" + strconv.Itoa(i), "x"}), h.env)
			if err == nil {
				_, err = h.m.Apply(uint64(i), u, nil)
			}
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	var snaps [][]byte
	for range 20 {
		var buf bytes.Buffer
		if err := h.m.Snapshot(&buf); err != nil {
			t.Fatalf("Snapshot: %v", err)
		}
		snaps = append(snaps, buf.Bytes())
	}
	if err := <-done; err != nil {
		t.Fatalf("writer: %v", err)
	}
	for _, snap := range snaps {
		if err := checkCounterSnapshot(snap); err != nil {
			t.Fatal(err)
		}
	}
}

func checkCounterSnapshot(snap []byte) error {
	seq, ops, err := readSnapshot(bufioReader(snap))
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	if seq == 0 {
		if len(ops) != 1 {
			return fmt.Errorf("snapshot at seq 0 has %d entries", len(ops)-1)
		}
		return nil
	}
	if got := int(seq) + 1; len(ops)-1 != got {
		return fmt.Errorf("snapshot at seq %d has %d entries, want %d", seq, len(ops)-1, got)
	}
	for _, op := range ops[1:] {
		if string(op.Key) == "c" && string(op.Entry.Value) != strconv.FormatUint(seq, 10) {
			return fmt.Errorf("snapshot at seq %d has c = %q", seq, op.Entry.Value)
		}
	}
	return nil
}

// testRestoreCorrupt damages a valid snapshot in many ways; each Restore
// must fail with ErrCorruptSnapshot and leave the machine as it was.
func testRestoreCorrupt(t *testing.T, newStore storeFactory) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 10))
	src := newHarness(t, newStore)
	fillRandom(src, rng, 40)
	snap := src.snapshot()

	dst := newHarness(t, newStore)
	dst.do("SET", "keep", "me")
	before := dst.snapshot()

	var bad [][]byte
	for n := 0; n < len(snap); n += 1 + n/8 {
		bad = append(bad, snap[:n])
	}
	for range 200 {
		b := bytes.Clone(snap)
		b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
		bad = append(bad, b)
	}
	bad = append(bad, append(bytes.Clone(snap), 0), []byte("LSKV\x02"), []byte("nonsense at all"))
	// A length field claiming far more than the stream holds.
	huge := append([]byte(snapMagic), snapVersion, 0, 0, 0, 0, 0, 0, 0, 9, tagEntry, 0xff, 0xff, 0xff, 0xff, 0x01)
	bad = append(bad, huge)

	for i, b := range bad {
		err := dst.m.Restore(bytes.NewReader(b))
		if !errors.Is(err, statemachine.ErrCorruptSnapshot) {
			t.Fatalf("case %d (%d bytes): Restore error = %v, want ErrCorruptSnapshot", i, len(b), err)
		}
	}
	if err := dst.m.Restore(iotestErrReader{}); !errors.Is(err, statemachine.ErrCorruptSnapshot) {
		t.Fatalf("Restore from failing reader = %v", err)
	}
	if after := dst.snapshot(); !bytes.Equal(after, before) {
		t.Fatal("a failed Restore changed the state")
	}
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, io.ErrClosedPipe }

func testRestoreOlder(t *testing.T, newStore storeFactory) {
	empty := newHarness(t, newStore)
	fresh := newHarness(t, newStore)
	if err := fresh.m.Restore(bytes.NewReader(empty.snapshot())); err != nil {
		t.Fatalf("empty snapshot onto fresh store: %v", err)
	}
	src := newHarness(t, newStore)
	src.do("SET", "a", "1")
	dst := newHarness(t, newStore)
	dst.do("SET", "b", "1")
	dst.do("SET", "b", "2")
	// An older snapshot replaces a newer state: the protocol decided.
	if err := dst.m.Restore(bytes.NewReader(src.snapshot())); err != nil {
		t.Fatalf("Restore of an older snapshot: %v", err)
	}
	if got := dst.do("GET", "b"); got != rNull {
		t.Fatalf("GET b after Restore of a snapshot without b = %q", got)
	}
	if got := dst.do("GET", "a"); got != rBulk("1") {
		t.Fatalf("GET a after Restore = %q", got)
	}
	if got := dst.m.AppliedSeq(); got != src.m.AppliedSeq() {
		t.Fatalf("AppliedSeq after Restore = %d, want the snapshot's %d", got, src.m.AppliedSeq())
	}
}

func testApplyCorrupt(t *testing.T, newStore storeFactory) {
	h := newHarness(t, newStore)
	h.do("SET", "k", "v")
	good, err := h.m.Prepare(toArgs([]string{"SET", "k", "w"}), h.env)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []statemachine.Update{nil, {}, {2}, good[:len(good)-1], append(bytes.Clone(good), 0), {1, 0, 1, 9}} {
		out, err := h.m.Apply(2, u, []byte("prefix"))
		if !errors.Is(err, statemachine.ErrCorruptUpdate) || string(out) != "prefix" {
			t.Fatalf("Apply(%x) = %q, %v; want ErrCorruptUpdate and out untouched", u, out, err)
		}
	}
	if h.m.AppliedSeq() != 1 {
		t.Fatalf("AppliedSeq = %d after corrupt updates, want 1", h.m.AppliedSeq())
	}
	if _, err := h.m.Apply(1, good, nil); !errors.Is(err, storage.ErrOutOfOrder) {
		t.Fatalf("Apply of a repeated seq = %v, want ErrOutOfOrder", err)
	}
}

// TestSnapshotWriteError checks that a failing writer surfaces its error.
func TestSnapshotWriteError(t *testing.T) {
	h := newHarness(t, memStore)
	for i := range 5000 {
		h.do("SET", "key"+strconv.Itoa(i), "some value to fill the buffer")
	}
	err := h.m.Snapshot(failWriter{})
	if !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("Snapshot to failing writer = %v", err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, io.ErrShortWrite }

// TestSnapshotReadersRace runs Reads and a Snapshot together, as a tail
// replica streaming state to a joiner does.
func TestSnapshotReadersRace(t *testing.T) {
	h := newHarness(t, memStore)
	fillRandom(h, rand.New(rand.NewPCG(1, 1)), 200)
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				if _, err := h.m.Read(toArgs([]string{"GET", "key:" + strconv.Itoa(i)}), h.env.now, nil); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	snap := h.snapshot()
	wg.Wait()
	if err := checkReadable(snap); err != nil {
		t.Fatal(err)
	}
}

func checkReadable(snap []byte) error {
	_, _, err := readSnapshot(bufioReader(snap))
	return err
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
