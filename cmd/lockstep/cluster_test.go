package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/storage"
)

// writeSeqs opens dir for the cluster and applies seqs 1..n.
func writeSeqs(t *testing.T, dir string, n uint64) string {
	t.Helper()
	st, err := storage.OpenPebble(dir, storage.PebbleOptions{ClusterID: "cid"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for seq := uint64(1); seq <= n; seq++ {
		b := &storage.Batch{Seq: seq, Ops: []storage.Op{{Kind: storage.OpSet, Key: []byte("k"), Entry: storage.Entry{Value: []byte("v")}}}}
		if err := st.Apply(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Sync(); err != nil {
		t.Fatal(err)
	}
	return st.DataID()
}

func appliedIn(t *testing.T, dir string) uint64 {
	t.Helper()
	st, err := storage.OpenPebble(dir, storage.PebbleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	return st.AppliedSeq()
}

// TestStateSetAsideUntilReplaced: a starting replica whose state the
// group does not count on moves it aside instead of deleting it; a later
// start on a copy that never became complete discards that copy, not the
// one set aside; a directory the group counts on is kept, and then what
// was set aside goes.
func TestStateSetAsideUntilReplaced(t *testing.T) {
	f := &serverFlags{storage: "pebble", dataDir: t.TempDir()}
	f.cluster.name = "n1"
	log := slog.New(slog.DiscardHandler)
	dir := filepath.Join(f.dataDir, "pebble")
	writeSeqs(t, dir, 5)
	open := func(cur *coord.Config) (keptAs, uint64) {
		t.Helper()
		st, kept, err := openReplicaStore(f, "cid", cur, log)
		if err != nil {
			t.Fatal(err)
		}
		seq := st.AppliedSeq()
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		return kept, seq
	}
	if kept, seq := open(nil); kept != keptNothing || seq != 0 {
		t.Fatalf("not a member: kept %v, applied %d; want a fresh store", kept, seq)
	}
	if got := appliedIn(t, replacedDir(dir)); got != 5 {
		t.Fatalf("set aside: applied %d, want 5", got)
	}
	if kept, seq := open(nil); kept != keptNothing || seq != 0 { // an empty copy: nothing to do
		t.Fatalf("second start on the empty copy: kept %v, applied %d", kept, seq)
	}
	writeSeqs(t, dir, 3) // a copy that never became complete
	if kept, seq := open(nil); kept != keptNothing || seq != 0 {
		t.Fatalf("start on an incomplete copy: kept %v, applied %d", kept, seq)
	}
	if got := appliedIn(t, replacedDir(dir)); got != 5 {
		t.Fatalf("the data set aside changed: applied %d, want 5", got)
	}
	id := writeSeqs(t, dir, 4)
	cur := &coord.Config{Epoch: 2, Members: []coord.Member{{Name: "n1", Incarnation: "x"}}, Data: map[string]string{"n1": id}}
	if kept, seq := open(cur); kept != keptMember || seq != 4 {
		t.Fatalf("a member's directory: kept %v, applied %d; want kept at 4", kept, seq)
	}
	if _, err := os.Stat(replacedDir(dir)); !os.IsNotExist(err) {
		t.Fatalf("the data set aside survives a complete copy: %v", err)
	}
}

// TestCleanStopKeepsState: a state recorded at a clean stop is kept as a
// joiner's (not a member's) once, when the record matches it; the record
// is consumed, and a record that does not match (writes applied after it)
// keeps nothing.
func TestCleanStopKeepsState(t *testing.T) {
	f := &serverFlags{storage: "pebble", dataDir: t.TempDir()}
	f.cluster.name = "n1"
	log := slog.New(slog.DiscardHandler)
	dir := filepath.Join(f.dataDir, "pebble")
	cur := &coord.Config{Epoch: 3, Forced: 1, Members: []coord.Member{{Name: "n2", Incarnation: "x"}}}
	open := func() (keptAs, uint64) {
		t.Helper()
		st, kept, err := openReplicaStore(f, "cid", cur, log)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		return kept, st.AppliedSeq()
	}
	id := writeSeqs(t, dir, 6)
	if err := writeCleanStop(f.dataDir, coord.Clean{Seq: 6, DataID: id, Forced: 1}); err != nil {
		t.Fatal(err)
	}
	if kept, seq := open(); kept != keptClean || seq != 6 {
		t.Fatalf("after a clean stop: kept %v at %d, want the clean state at 6", kept, seq)
	}
	if _, err := os.Stat(filepath.Join(f.dataDir, cleanStopFile)); !os.IsNotExist(err) {
		t.Fatalf("the clean-stop record survives the start that used it: %v", err)
	}
	if kept, seq := open(); kept != keptNothing || seq != 0 {
		t.Fatalf("a second start without a record: kept %v at %d, want a fresh store", kept, seq)
	}
	if err := os.RemoveAll(replacedDir(dir)); err != nil {
		t.Fatal(err)
	}
	id = writeSeqs(t, dir, 8)
	if err := writeCleanStop(f.dataDir, coord.Clean{Seq: 7, DataID: id, Forced: 1}); err != nil {
		t.Fatal(err)
	}
	if kept, seq := open(); kept != keptNothing || seq != 0 {
		t.Fatalf("a record older than the state: kept %v at %d, want a fresh store", kept, seq)
	}
	// Restarted before the group removed the stopped process: the
	// configuration still names the directory a member's.
	if err := os.RemoveAll(replacedDir(dir)); err != nil {
		t.Fatal(err)
	}
	id = writeSeqs(t, dir, 9)
	if err := writeCleanStop(f.dataDir, coord.Clean{Seq: 9, DataID: id, Forced: 1}); err != nil {
		t.Fatal(err)
	}
	cur.Members = append(cur.Members, coord.Member{Name: "n1", Incarnation: "old"})
	cur.Data = map[string]string{"n1": id}
	if kept, seq := open(); kept != keptCleanMember || seq != 9 {
		t.Fatalf("a clean stop the group has not acted on: kept %v at %d, want a member's clean state at 9", kept, seq)
	}
}
