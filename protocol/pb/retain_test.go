package pb_test

import (
	"testing"

	"github.com/lockstep/lockstep/protocol/pb"
)

// fiveWritten is a group a, b (primary, backup) whose replicas retain
// retain bytes, after writes e1..e5, and its options.
func fiveWritten(t *testing.T, retain int) (*cluster, pb.Options) {
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
	return c, o
}

// keptJoiner adds j to c on a state of seq applied entries kept from a
// clean stop (all committed, lineage unknown), with opts.
func keptJoiner(c *cluster, opts pb.Options, applied uint64) {
	j := c.Add("j", applied)
	opts.ID, opts.Committed = "j", true
	j.Core = pb.New(opts, applied)
}

// TestKeptJoinerFromRetainedLog: a replica restarted on a committed state
// at seq 3, whose lineage it no longer knows, rejoins as joiner; the
// primary retained the entries after it and streams them: no snapshot.
func TestKeptJoinerFromRetainedLog(t *testing.T) {
	c, o := fiveWritten(t, 64)
	keptJoiner(c, o, 3)
	c.Config(cfg(2, "j", "a", "b"))
	c.Run()
	if j := c.Node("j"); j.Need != "" {
		t.Fatalf("the kept joiner asks %s for a snapshot, though the primary holds what follows its seq 3", j.Need)
	}
	c.Propose("a", "e6")
	c.Run()
	c.WantApplied("j", seqs(4, 6)...)
	if st := c.status("j"); !st.CaughtUp {
		t.Fatalf("joiner %+v: want caught up", st)
	}
}

// TestUncommittedStateNeedsSnapshot: the same state without the claim
// that it is committed (a crash, not a clean stop) is not trusted: its
// lineage is unknown, so the joiner is sent for a snapshot.
func TestUncommittedStateNeedsSnapshot(t *testing.T) {
	c, _ := fiveWritten(t, 64)
	c.Add("j", 3)
	c.Config(cfg(2, "j", "a", "b"))
	c.Run()
	if j := c.Node("j"); j.Need != "a" {
		t.Fatalf("a joiner on a state of unknown lineage asks %q for a snapshot, want a", j.Need)
	}
}

// TestKeptJoinerBeyondRetention: when the primary no longer holds the
// entries after the kept seq, the joiner is sent for a snapshot.
func TestKeptJoinerBeyondRetention(t *testing.T) {
	c, o := fiveWritten(t, 4) // two entries of "eN"
	keptJoiner(c, o, 2)
	c.Config(cfg(2, "j", "a", "b"))
	c.Run()
	if j := c.Node("j"); j.Need != "a" {
		t.Fatalf("joiner at 2 asks %q for a snapshot; the primary retains only 4 and 5, so want a", j.Need)
	}
}
