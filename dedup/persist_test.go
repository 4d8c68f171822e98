package dedup

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/vfs"

	"github.com/lockstep/lockstep/kv"
	"github.com/lockstep/lockstep/statemachine"
	"github.com/lockstep/lockstep/storage"
)

// node is a machine over a Pebble store that a test can close and open
// again on the same directory, as a restarted process would.
type node struct {
	t     *testing.T
	dir   string
	fs    vfs.FS
	max   int
	store *storage.Pebble
	m     *Machine
}

func newNode(t *testing.T, max int) *node {
	n := &node{t: t, dir: t.TempDir(), max: max}
	n.open()
	t.Cleanup(func() {
		if n.store != nil {
			_ = n.store.Close()
		}
	})
	return n
}

func (n *node) open() {
	n.t.Helper()
	st, err := storage.OpenPebble(n.dir, storage.PebbleOptions{FS: n.fs, CacheSize: 1 << 20})
	if err != nil {
		n.t.Fatal(err)
	}
	n.store = st
	n.m = mustWrap(n.t, kv.New(st, kv.Options{}), n.max)
}

// restart closes the store cleanly and opens it again.
func (n *node) restart() {
	n.t.Helper()
	if err := n.store.Close(); err != nil {
		n.t.Fatal(err)
	}
	n.open()
}

// tagged prepares and applies a tagged request at seq, as the runtime does
// once Duplicate has said it is new, and returns its reply.
func (n *node) tagged(seq uint64, client string, num uint64, cmd ...string) string {
	n.t.Helper()
	u, err := n.m.PrepareTagged(client, num, args(cmd...), env{})
	if err != nil {
		n.t.Fatal(err)
	}
	return apply(n.t, n.m, seq, u)
}

// wantDup checks that (client, num) is a duplicate answered with reply,
// released at seq.
func wantDup(t *testing.T, m *Machine, client string, num uint64, reply string, seq uint64) {
	t.Helper()
	got, at, dup, err := m.Duplicate(client, num)
	if err != nil || !dup || string(got) != reply || at != seq {
		t.Fatalf("Duplicate(%s, %d) = %q at %d, dup %v, %v; want %q at %d", client, num, got, at, dup, err, reply, seq)
	}
}

func wantUnknown(t *testing.T, m *Machine, client string) {
	t.Helper()
	if _, _, dup, _ := m.Duplicate(client, 1); dup {
		t.Fatalf("client %s still has a record", client)
	}
}

// storedClients lists the clients whose records the store holds.
func storedClients(t *testing.T, s storage.Store) []string {
	t.Helper()
	var out []string
	if err := s.ScanMeta([]byte(recordPrefix), func(k, _ []byte) bool {
		out = append(out, string(k[len(recordPrefix):]))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func snapshotBytes(t *testing.T, m *Machine) []byte {
	t.Helper()
	snap, err := m.OpenSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	var buf bytes.Buffer
	if err := snap.Write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestRetryAfterRestartIsDuplicate: a machine wrapped over a store that
// holds data knows the requests that data includes. Without the stored
// table the retry of INCR would apply again and answer :3.
func TestRetryAfterRestartIsDuplicate(t *testing.T) {
	n := newNode(t, 0)
	n.tagged(1, "c1", 1, "INCR", "n")
	if got := n.tagged(2, "c1", 2, "INCR", "n"); got != ":2\r\n" {
		t.Fatalf("INCR = %q", got)
	}
	n.tagged(3, "c2", 7, "SET", "k", "v")
	before := snapshotBytes(t, n.m)
	n.restart()
	wantDup(t, n.m, "c1", 2, ":2\r\n", 2)
	wantDup(t, n.m, "c2", 7, "+OK\r\n", 3)
	if _, _, _, err := n.m.Duplicate("c1", 1); !errors.Is(err, ErrTooOld) {
		t.Fatalf("an older request after restart: %v, want ErrTooOld", err)
	}
	// The digest, a hash of the snapshot, is what it was before.
	if !bytes.Equal(snapshotBytes(t, n.m), before) {
		t.Fatal("the snapshot after a restart differs from the one before")
	}
	if got := n.tagged(4, "c1", 3, "INCR", "n"); got != ":3\r\n" {
		t.Fatalf("the next request after restart = %q", got)
	}
	n.restart()
	wantDup(t, n.m, "c1", 3, ":3\r\n", 4)
}

// TestEvictionPersists: the client evicted to make room is gone from the
// store in the same batch as the record that replaced it.
func TestEvictionPersists(t *testing.T) {
	n := newNode(t, 2)
	n.tagged(1, "a", 1, "SET", "a", "1")
	n.tagged(2, "b", 1, "SET", "b", "1")
	n.tagged(3, "a", 2, "SET", "a", "2") // a is now newer than b
	n.tagged(4, "c", 1, "SET", "c", "1") // evicts b
	if got := fmt.Sprint(storedClients(t, n.store)); got != "[a c]" {
		t.Fatalf("stored clients = %s, want [a c]", got)
	}
	n.restart()
	wantUnknown(t, n.m, "b")
	wantDup(t, n.m, "a", 2, "+OK\r\n", 3)
	wantDup(t, n.m, "c", 1, "+OK\r\n", 4)
}

// TestLoadedTableOverMaxEvictsToMax: a table loaded over a smaller bound
// (the bound changed between runs) shrinks to it with the next new client,
// in memory and in the store alike.
func TestLoadedTableOverMaxEvictsToMax(t *testing.T) {
	n := newNode(t, 0)
	for i, c := range []string{"a", "b", "c"} {
		n.tagged(uint64(i+1), c, 1, "SET", c, "1")
	}
	n.max = 2
	n.restart()
	n.tagged(4, "d", 1, "SET", "d", "1")
	if got := fmt.Sprint(storedClients(t, n.store)); got != "[c d]" {
		t.Fatalf("stored clients = %s, want [c d]", got)
	}
	wantUnknown(t, n.m, "a")
	wantUnknown(t, n.m, "b")
}

// TestRestoreReplacesStoredTable: a snapshot install replaces the stored
// table with the snapshot's, records the receiver had included.
func TestRestoreReplacesStoredTable(t *testing.T) {
	src := newMachine(t, 0)
	u, _ := src.PrepareTagged("c1", 5, args("SET", "k", "v"), env{})
	apply(t, src, 1, u)
	apply(t, src, 2, mustPrepare(t, src, "SET", "j", "w"))
	snap := snapshotBytes(t, src)

	n := newNode(t, 0)
	n.tagged(1, "old", 1, "SET", "x", "1")
	n.tagged(9, "c1", 9, "SET", "x", "2")
	if err := n.m.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	wantUnknown(t, n.m, "old")
	n.restart()
	wantUnknown(t, n.m, "old")
	wantDup(t, n.m, "c1", 5, "+OK\r\n", 1)
	if got := fmt.Sprint(storedClients(t, n.store)); got != "[c1]" {
		t.Fatalf("stored clients = %s, want [c1]", got)
	}
	if !bytes.Equal(snapshotBytes(t, n.m), snap) {
		t.Fatal("the restored and reopened machine's snapshot differs from its source's")
	}
}

// TestDeltaRecordsPersist: a backup that installs checkpoint deltas keeps
// their records, removals included, across a restart.
func TestDeltaRecordsPersist(t *testing.T) {
	p := newMachine(t, 2)
	p.TrackChanges(true)
	b := newNode(t, 2)
	seq := uint64(0)
	do := func(client string, num uint64, cmd ...string) {
		seq++
		u, err := p.PrepareTagged(client, num, args(cmd...), env{})
		if err != nil {
			t.Fatal(err)
		}
		apply(t, p, seq, u)
	}
	checkpoint := func() {
		d, err := p.TakeDelta()
		if err != nil {
			t.Fatal(err)
		}
		apply(t, b.m, seq, d)
	}
	do("c1", 1, "INCR", "n")
	do("c2", 1, "INCR", "n")
	checkpoint()
	b.restart()
	wantDup(t, b.m, "c1", 1, ":1\r\n", 1)
	wantDup(t, b.m, "c2", 1, ":2\r\n", 2)
	do("c3", 1, "INCR", "n") // evicts c1 on the primary
	checkpoint()
	b.restart()
	wantUnknown(t, b.m, "c1")
	wantDup(t, b.m, "c3", 1, ":3\r\n", 3)
	if !bytes.Equal(snapshotBytes(t, b.m), snapshotBytes(t, p)) {
		t.Fatal("the restarted backup's snapshot differs from the primary's")
	}
}

// TestDeltaEvictsOnBackup: a delta that brings more clients than the
// backup's bound makes the backup evict, and the evictions are stored.
func TestDeltaEvictsOnBackup(t *testing.T) {
	p := newMachine(t, 0)
	p.TrackChanges(true)
	for i, c := range []string{"a", "b", "c"} {
		u, _ := p.PrepareTagged(c, 1, args("SET", c, "1"), env{})
		apply(t, p, uint64(i+1), u)
	}
	d, err := p.TakeDelta()
	if err != nil {
		t.Fatal(err)
	}
	b := newNode(t, 2)
	apply(t, b.m, 3, d)
	if got := fmt.Sprint(storedClients(t, b.store)); got != "[b c]" {
		t.Fatalf("stored clients = %s, want [b c]", got)
	}
	wantUnknown(t, b.m, "a")
}

// TestCrashKeepsRecordWithWrite: after a crash that loses unsynced writes,
// the table matches the data: a record survives exactly when its write
// does, so a lost write is applied again on retry and a kept one is not.
func TestCrashKeepsRecordWithWrite(t *testing.T) {
	fs := vfs.NewStrictMem()
	n := &node{t: t, dir: "db", fs: fs}
	n.open()
	n.tagged(1, "c1", 1, "INCR", "n")
	if err := n.store.Sync(); err != nil {
		t.Fatal(err)
	}
	n.tagged(2, "c1", 2, "INCR", "n")
	fs.SetIgnoreSyncs(true)
	if err := n.store.Close(); err != nil {
		t.Fatal(err)
	}
	fs.ResetToSyncedState()
	fs.SetIgnoreSyncs(false)
	n.open()
	defer n.store.Close()
	if n.store.AppliedSeq() != 1 {
		t.Fatalf("AppliedSeq after crash = %d, want 1", n.store.AppliedSeq())
	}
	wantDup(t, n.m, "c1", 1, ":1\r\n", 1)
	if _, _, dup, _ := n.m.Duplicate("c1", 2); dup {
		t.Fatal("the record of a write the crash lost survived it")
	}
	if got := n.tagged(2, "c1", 2, "INCR", "n"); got != ":2\r\n" {
		t.Fatalf("the lost write applied on retry = %q, want :2", got)
	}
}

// TestMemoryCloneKeepsTable: the simulation's disk, a Memory clone, carries
// the table like a Pebble directory.
func TestMemoryCloneKeepsTable(t *testing.T) {
	st := storage.NewMemory()
	m := mustWrap(t, kv.New(st, kv.Options{}), 0)
	u, _ := m.PrepareTagged("c1", 1, args("INCR", "n"), env{})
	apply(t, m, 1, u)
	again := mustWrap(t, kv.New(st.Clone(), kv.Options{}), 0)
	wantDup(t, again, "c1", 1, ":1\r\n", 1)
}

// TestMemoryOnlyTableSameState: over a machine that cannot store the table
// (it hides kv's hooks), the table lives in memory and a snapshot, hence
// the digest, is the same as a durable machine's.
func TestMemoryOnlyTableSameState(t *testing.T) {
	durable := newMachine(t, 2)
	plain := mustWrap(t, plainMachine{kv.New(storage.NewMemory(), kv.Options{})}, 2)
	if plain.durable != nil || durable.durable == nil {
		t.Fatal("durability detected on the wrong machine")
	}
	for i, c := range []string{"a", "b", "a", "c"} {
		u, _ := durable.PrepareTagged(c, uint64(i+1), args("INCR", "n"), env{})
		apply(t, durable, uint64(i+1), u)
		apply(t, plain, uint64(i+1), u)
	}
	if !bytes.Equal(snapshotBytes(t, durable), snapshotBytes(t, plain)) {
		t.Fatal("snapshots differ")
	}
	wantUnknown(t, plain, "b")
}

// TestLoadRejectsCorruptRecord: a stored record this package could not
// have written stops the machine from starting.
func TestLoadRejectsCorruptRecord(t *testing.T) {
	for _, v := range []string{"", "\x02\x01\x01", "\x01", "\x01\x05"} {
		st := storage.NewMemory()
		op := storage.Op{Kind: storage.OpSetMeta, Key: []byte(recordPrefix + "c"), Entry: storage.Entry{Value: []byte(v)}}
		if err := st.Apply(&storage.Batch{Seq: 1, Ops: []storage.Op{op}}); err != nil {
			t.Fatal(err)
		}
		if _, err := Wrap(kv.New(st, kv.Options{}), 0); !errors.Is(err, storage.ErrCorrupt) {
			t.Errorf("record %q: Wrap = %v, want ErrCorrupt", v, err)
		}
	}
}

// TestRecordRoundTrip: a stored value decodes to the record it encodes.
func TestRecordRoundTrip(t *testing.T) {
	for _, r := range []record{{num: 1, seq: 1}, {num: 1 << 63, seq: 300, reply: []byte("+OK\r\n")}} {
		want, v := newRecord(r.num, r.seq, r.reply)
		got, ok := decodeRecord(v)
		if !ok || got.num != want.num || got.seq != want.seq || !bytes.Equal(got.reply, r.reply) {
			t.Fatalf("decodeRecord(%x) = %+v, %v; want %+v", v, got, ok, r)
		}
	}
}

var _ statemachine.StateMachine = plainMachine{}
