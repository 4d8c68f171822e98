package dedup

import (
	"bytes"
	"errors"
	"testing"

	"github.com/lockstep/lockstep/kv"
	"github.com/lockstep/lockstep/statemachine"
	"github.com/lockstep/lockstep/storage"
)

type env struct{}

func (env) NowMillis() int64 { return 1_000_000 }
func (env) Rand() uint64     { return 4 }

func args(s ...string) [][]byte {
	out := make([][]byte, len(s))
	for i, a := range s {
		out[i] = []byte(a)
	}
	return out
}

func newMachine(t testing.TB, max int) *Machine {
	t.Helper()
	return mustWrap(t, kv.New(storage.NewMemory(), kv.Options{}), max)
}

func mustWrap(t testing.TB, inner statemachine.StateMachine, max int) *Machine {
	t.Helper()
	m, err := Wrap(inner, max)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func apply(t *testing.T, m *Machine, seq uint64, u statemachine.Update) string {
	t.Helper()
	out, err := m.Apply(seq, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestRetryGetsRecordedReply(t *testing.T) {
	m := newMachine(t, 0)
	u, err := m.PrepareTagged("c1", 7, args("INCR", "n"), env{})
	if err != nil {
		t.Fatal(err)
	}
	if got := apply(t, m, 1, u); got != ":1\r\n" {
		t.Fatalf("INCR = %q", got)
	}
	reply, seq, dup, err := m.Duplicate("c1", 7)
	if err != nil || !dup || seq != 1 || string(reply) != ":1\r\n" {
		t.Fatalf("Duplicate(c1, 7) = %q, %d, %v, %v", reply, seq, dup, err)
	}
	if _, _, dup, _ := m.Duplicate("c1", 8); dup {
		t.Fatal("a new request number reported as duplicate")
	}
	if _, _, _, err := m.Duplicate("c1", 6); !errors.Is(err, ErrTooOld) {
		t.Fatalf("old request: %v", err)
	}
	if _, _, dup, _ := m.Duplicate("c2", 7); dup {
		t.Fatal("another client reported as duplicate")
	}
}

// TestSnapshotCarriesTable restores a replica from a snapshot and checks
// that it recognizes a retry applied before the snapshot.
func TestSnapshotCarriesTable(t *testing.T) {
	src := newMachine(t, 0)
	u, _ := src.PrepareTagged("c1", 1, args("SET", "k", "v"), env{})
	apply(t, src, 1, u)
	apply(t, src, 2, mustPrepare(t, src, "SET", "j", "w"))
	snap, err := src.OpenSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.Write(&buf); err != nil {
		t.Fatal(err)
	}
	snap.Close()
	dst := newMachine(t, 0)
	if err := dst.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if reply, seq, dup, _ := dst.Duplicate("c1", 1); !dup || seq != 1 || string(reply) != "+OK\r\n" {
		t.Fatalf("restored table: %q %d %v", reply, seq, dup)
	}
	if dst.AppliedSeq() != 2 {
		t.Fatalf("AppliedSeq = %d", dst.AppliedSeq())
	}
}

func mustPrepare(t *testing.T, m *Machine, a ...string) statemachine.Update {
	t.Helper()
	u, err := m.Prepare(args(a...), env{})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestEvictionIsDeterministic fills a small table on two replicas and
// checks they evict the same clients.
func TestEvictionIsDeterministic(t *testing.T) {
	a, b := newMachine(t, 3), newMachine(t, 3)
	for i, c := range []string{"w", "x", "y", "z", "x"} {
		u, _ := a.PrepareTagged(c, uint64(i+1), args("SET", c, "v"), env{})
		apply(t, a, uint64(i+1), u)
		apply(t, b, uint64(i+1), u)
	}
	for _, c := range []string{"w", "x", "y", "z"} {
		_, _, da, _ := a.Duplicate(c, 100)
		_, _, db, _ := b.Duplicate(c, 100)
		if da != db {
			t.Fatalf("replicas disagree about %s", c)
		}
	}
	if _, _, dup, _ := a.Duplicate("w", 1); dup {
		t.Fatal("oldest client w should have been evicted")
	}
	if _, _, dup, _ := a.Duplicate("x", 5); !dup {
		t.Fatal("recently used client x was evicted")
	}
}

func TestCorruptUpdate(t *testing.T) {
	m := newMachine(t, 0)
	for _, u := range [][]byte{nil, {0x42}, {tagTagged}, {tagTagged, 5, 'a'}} {
		if _, err := m.Apply(1, u, nil); !errors.Is(err, statemachine.ErrCorruptUpdate) {
			t.Errorf("Apply(%q) = %v", u, err)
		}
	}
}

// plainMachine hides kv's PrepareAppend, for the path that copies the
// inner update behind the header.
type plainMachine struct{ statemachine.StateMachine }

// TestPrepareBehindHeaderSameBytes: preparing the inner update straight
// behind the dedup header and copying it there give the same Update.
func TestPrepareBehindHeaderSameBytes(t *testing.T) {
	direct := newMachine(t, 0)
	copied := mustWrap(t, plainMachine{kv.New(storage.NewMemory(), kv.Options{})}, 0)
	for _, m := range []*Machine{direct, copied} {
		if _, ok := m.StateMachine.(appendPreparer); ok != (m == direct) {
			t.Fatalf("appendPreparer = %v for the wrong machine", ok)
		}
	}
	a, err := direct.Prepare(args("SET", "k", "v"), env{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := copied.Prepare(args("SET", "k", "v"), env{})
	if err != nil {
		t.Fatal(err)
	}
	at, err := direct.PrepareTagged("c1", 3, args("SET", "k", "v"), env{})
	if err != nil {
		t.Fatal(err)
	}
	bt, err := copied.PrepareTagged("c1", 3, args("SET", "k", "v"), env{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) || !bytes.Equal(at, bt) || bytes.Equal(a, at) {
		t.Fatalf("updates differ: %x vs %x, tagged %x vs %x", a, b, at, bt)
	}
}
