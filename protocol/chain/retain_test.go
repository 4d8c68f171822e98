package chain_test

import (
	"errors"
	"testing"

	"github.com/lockstep/lockstep/protocol/chain"
)

// TestKeptJoinerFromRetainedLog: a replica that restarts on a state it
// kept (all committed, at seq 3) joins behind a tail that retained the
// entries after it; the tail streams them, and no snapshot is needed.
func TestKeptJoinerFromRetainedLog(t *testing.T) {
	o := small
	o.RetainBytes = 64
	c := newCluster(t, o, "a", "b")
	c.Config(cfg(1, "", "a", "b"))
	c.Run()
	for _, d := range seqs(1, 5) {
		c.Propose("a", d)
	}
	c.Run()
	if st := c.status("b"); st.Pending != 0 || st.Retained != 5 || st.Oldest != 0 {
		t.Fatalf("tail pending %d, retained %d from %d; want 0, 5 from 0", st.Pending, st.Retained, st.Oldest)
	}
	c.Add("j", 3)
	c.Config(cfg(2, "j", "a", "b"))
	c.Run()
	if j := c.Node("j"); j.Need != "" {
		t.Fatalf("the kept joiner asks %s for a snapshot, though the tail holds what follows its seq 3", j.Need)
	}
	c.Propose("a", "e6")
	c.Run()
	c.WantApplied("j", seqs(4, 6)...)
	if st := c.status("j"); !st.CaughtUp || st.Commit != 6 {
		t.Fatalf("joiner %+v: want caught up, with everything it applied committed", st)
	}
}

// TestKeptJoinerBeyondRetention: when the tail no longer holds the entries
// after the kept state's seq, the joiner is sent for a snapshot.
func TestKeptJoinerBeyondRetention(t *testing.T) {
	o := small
	o.RetainBytes = 4 // two entries of "eN"
	c := newCluster(t, o, "a", "b")
	c.Config(cfg(1, "", "a", "b"))
	c.Run()
	for _, d := range seqs(1, 5) {
		c.Propose("a", d)
	}
	c.Run()
	if st := c.status("b"); st.Retained != 2 || st.Oldest != 3 {
		t.Fatalf("tail retains %d from %d; want 2 from 3", st.Retained, st.Oldest)
	}
	c.Add("j", 2)
	c.Config(cfg(2, "j", "a", "b"))
	c.Run()
	if j := c.Node("j"); j.Need != "b" {
		t.Fatalf("joiner at 2 asks %q for a snapshot; the tail holds only 4 and 5, so want b", j.Need)
	}
}

// TestJoinAllowanceFromRetention: a tail whose joiner applies nothing acks
// beyond JoinWindow as many entries as RetainBytes covers, then stops.
func TestJoinAllowanceFromRetention(t *testing.T) {
	o := small
	o.Window, o.JoinWindow, o.RetainBytes = 4, 2, 10
	c := newCluster(t, o, "a", "j")
	c.Node("j").Manual = true
	c.Config(cfg(1, "j", "a"))
	c.Run()
	n := 0
	for ; n < 40; n++ {
		if _, err := c.TryPropose("a", "x"); errors.Is(err, chain.ErrWindowFull) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		c.Run()
	}
	// One-byte entries: 10 fit in RetainBytes, beyond which the Window
	// of 4 is taken.
	if n != 14 || c.Node("a").Commit != 14 {
		t.Fatalf("took %d writes with commit %d, want 14 (RetainBytes 10 of 1-byte entries + Window 4)", n, c.Node("a").Commit)
	}
}
