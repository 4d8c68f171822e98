package pb_test

import (
	"testing"

	"github.com/lockstep/lockstep/protocol/pb"
)

func isType(t pb.MsgType, from string) func(pb.Message) bool {
	return func(m pb.Message) bool { return m.Type == t && m.From == from }
}

// TestLostEntriesResent: entries lost on the way are sent again from the
// oldest unacknowledged one after ResendTicks without ack progress.
func TestLostEntriesResent(t *testing.T) {
	c := newCluster(t, small, "a", "b")
	c.Config(cfg(1, "", "a", "b"))
	c.LostEntriesResent("a", "b", small.ResendTicks, isType(pb.MsgEntries, "a"))
}

// TestGapAsksAgain: a batch that does not continue the follower's log is
// dropped and the follower says Hello, without waiting for a timer.
func TestGapAsksAgain(t *testing.T) {
	c := newCluster(t, small, "a", "b")
	c.Config(cfg(1, "", "a", "b"))
	c.GapAsksAgain("a", "b", isType(pb.MsgEntries, "a"))
}

// TestLostHelloResent: a backup that hears nothing says Hello again after
// HelloTicks.
func TestLostHelloResent(t *testing.T) {
	c := newCluster(t, small, "a", "b")
	c.Drop = isType(pb.MsgHello, "b")
	c.Config(cfg(1, "", "a", "b"))
	c.Run()
	c.Drop = nil
	c.Propose("a", "e1")
	c.Run()
	if len(c.Node("b").Applied) != 0 || c.status("b").Synced {
		t.Fatal("the primary sent entries before any Hello")
	}
	c.Tick("b", small.HelloTicks)
	c.Run()
	c.WantApplied("b", "e1")
	if st := c.status("b"); !st.Synced || !st.CaughtUp {
		t.Fatalf("b %+v", st)
	}
}

// TestLostAcksRepeated: lost acks are repeated when the primary resends,
// since acks are cumulative.
func TestLostAcksRepeated(t *testing.T) {
	c := newCluster(t, small, "a", "b")
	c.Config(cfg(1, "", "a", "b"))
	c.Run()
	c.Drop = isType(pb.MsgAck, "b")
	for _, d := range seqs(1, 3) {
		c.Propose("a", d)
	}
	c.Run()
	c.Drop = nil
	if c.Node("a").Commit != 0 {
		t.Fatalf("commit %d without any ack", c.Node("a").Commit)
	}
	c.Tick("a", small.ResendTicks)
	c.Run()
	if c.Node("a").Commit != 3 {
		t.Fatalf("commit %d after the resend, want 3", c.Node("a").Commit)
	}
	c.WantApplied("b", seqs(1, 3)...)
}

// TestHelloAfterEveryEpoch: every new configuration restarts the links;
// the primary sends nothing until the backup's Hello of the new epoch.
func TestHelloAfterEveryEpoch(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.Config(cfg(1, "", "a", "b", "c"))
	c.Run()
	c.Propose("a", "e1")
	c.Run()
	c.Config(cfg(2, "", "a", "b", "c"), "a")
	c.Propose("a", "e2")
	if len(c.Queue) != 0 {
		t.Fatalf("the primary sent %d messages before any Hello of epoch 2", len(c.Queue))
	}
	c.Config(cfg(2, "", "a", "b", "c"), "b", "c")
	c.Run()
	c.WantApplied("c", "e1", "e2")
	if a := c.Node("a"); a.Commit != 2 {
		t.Fatalf("commit %d, want 2", a.Commit)
	}
}
