package chain_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/lockstep/lockstep/protocol/chain"
)

// fiveWritten is a chain a, b (head, tail) retaining retain bytes, after
// writes e1..e5.
func fiveWritten(t *testing.T, retain int) *cluster {
	t.Helper()
	o := small
	o.RetainBytes = retain
	c := newCluster(t, o, "a", "b")
	c.Config(cfg(1, "", "a", "b"))
	c.Run()
	for _, d := range seqs(1, 5) {
		c.Propose("a", d)
	}
	c.Run()
	return c
}

// TestKeptJoinerFromRetainedLog: a replica that restarts on a state it
// kept (all committed, at seq 3) joins behind a tail that retained the
// entries after it; the tail streams them, and no snapshot is needed.
func TestKeptJoinerFromRetainedLog(t *testing.T) {
	c := fiveWritten(t, 64)
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
	c := fiveWritten(t, 4) // two entries of "eN"
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

// TestKeptJoinerAheadOfNewTail: the old tail b commits e3, which its
// joiner n has not received, n is promoted, and b stops with its state
// all committed and rejoins on it behind n. Its Hello names a seq n does
// not have yet: n must not refuse it as a protocol error, and b catches up
// once n has reached what b committed.
func TestKeptJoinerAheadOfNewTail(t *testing.T) {
	o := small
	o.RetainBytes = 64
	c := newCluster(t, o, "a", "b", "n")
	c.Config(cfg(1, "", "a", "b"), "a", "b")
	c.Run()
	c.Propose("a", "e1")
	c.Propose("a", "e2")
	c.Run()
	c.Config(cfg(2, "n", "a", "b"))
	c.Run()
	c.WantApplied("n", seqs(1, 2)...)
	c.Propose("a", "e3")
	for len(c.Node("b").Applied) < 3 {
		if _, ok, err := c.Deliver(); !ok || err != nil {
			t.Fatalf("b never applied e3 (%v)", err)
		}
	}
	c.Queue = slices.DeleteFunc(c.Queue, func(m chain.Message) bool { return m.To == "n" })
	c.Run()
	if st := c.status("b"); st.Commit != 3 || st.Applied != 3 {
		t.Fatalf("old tail b: commit %d applied %d, want both 3 (a tail's state is committed)", st.Commit, st.Applied)
	}
	c.Config(cfg(3, "", "a", "b", "n"), "a", "n")
	c.Crash("b")
	c.Add("b", 3) // restarted on its kept state
	c.Config(cfg(4, "", "a", "n"), "a", "n")
	c.Config(cfg(5, "b", "a", "n"))
	c.Run()
	c.Tick("b", o.HelloTicks)
	c.Run()
	c.Propose("a", "e4")
	c.Run()
	c.WantApplied("n", seqs(1, 4)...)
	c.WantApplied("b", "e4")
	if st := c.status("b"); !st.CaughtUp || c.Node("b").Need != "" {
		t.Fatalf("kept joiner %+v (needs a snapshot from %q): want caught up without one", st, c.Node("b").Need)
	}
}
