package pb_test

import (
	"testing"

	"github.com/lockstep/lockstep/protocol/pb"
)

// dropN returns a filter that drops the first n messages matching match.
func dropN(n int, match func(pb.Message) bool) func(pb.Message) bool {
	return func(m pb.Message) bool {
		if n > 0 && match(m) {
			n--
			return true
		}
		return false
	}
}

func isType(t pb.MsgType, from string) func(pb.Message) bool {
	return func(m pb.Message) bool { return m.Type == t && m.From == from }
}

// TestLostEntriesResent: entries lost on the way are sent again from the
// oldest unacknowledged one after ResendTicks without ack progress.
func TestLostEntriesResent(t *testing.T) {
	c := newCluster(t, small, "a", "b")
	c.config(cfg(1, "", "a", "b"))
	c.run()
	c.drop = isType(pb.MsgEntries, "a")
	for _, d := range seqs(1, 4) {
		c.propose("a", d)
	}
	c.run()
	c.drop = nil
	if len(c.node("b").applied) != 0 {
		t.Fatalf("b applied %q although every batch was lost", c.node("b").applied)
	}
	c.tick("a", small.ResendTicks-1)
	if len(c.queue) != 0 {
		t.Fatalf("a sent %d messages before ResendTicks", len(c.queue))
	}
	c.tick("a", 1)
	c.run()
	c.wantApplied("b", seqs(1, 4)...)
	if c.node("a").commit != 4 {
		t.Fatalf("commit %d, want 4", c.node("a").commit)
	}
}

// TestGapAsksAgain: a batch that does not continue the backup's log is
// dropped and the backup says Hello, without waiting for a timer.
func TestGapAsksAgain(t *testing.T) {
	c := newCluster(t, small, "a", "b")
	c.config(cfg(1, "", "a", "b"))
	c.run()
	c.drop = dropN(1, isType(pb.MsgEntries, "a"))
	for _, d := range seqs(1, 6) {
		c.propose("a", d)
	}
	c.run()
	c.wantApplied("b", seqs(1, 6)...)
}

// TestLostHelloResent: a backup that hears nothing says Hello again after
// HelloTicks.
func TestLostHelloResent(t *testing.T) {
	c := newCluster(t, small, "a", "b")
	c.drop = isType(pb.MsgHello, "b")
	c.config(cfg(1, "", "a", "b"))
	c.run()
	c.drop = nil
	c.propose("a", "e1")
	c.run()
	if len(c.node("b").applied) != 0 || c.status("b").Synced {
		t.Fatal("the primary sent entries before any Hello")
	}
	c.tick("b", small.HelloTicks)
	c.run()
	c.wantApplied("b", "e1")
	if st := c.status("b"); !st.Synced || !st.CaughtUp {
		t.Fatalf("b %+v", st)
	}
}

// TestLostAcksRepeated: lost acks are repeated when the primary resends,
// since acks are cumulative.
func TestLostAcksRepeated(t *testing.T) {
	c := newCluster(t, small, "a", "b")
	c.config(cfg(1, "", "a", "b"))
	c.run()
	c.drop = isType(pb.MsgAck, "b")
	for _, d := range seqs(1, 3) {
		c.propose("a", d)
	}
	c.run()
	c.drop = nil
	if c.node("a").commit != 0 {
		t.Fatalf("commit %d without any ack", c.node("a").commit)
	}
	c.tick("a", small.ResendTicks)
	c.run()
	if c.node("a").commit != 3 {
		t.Fatalf("commit %d after the resend, want 3", c.node("a").commit)
	}
	c.wantApplied("b", seqs(1, 3)...)
}

// TestHelloAfterEveryEpoch: every new configuration restarts the links;
// the primary sends nothing until the backup's Hello of the new epoch.
func TestHelloAfterEveryEpoch(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.config(cfg(1, "", "a", "b", "c"))
	c.run()
	c.propose("a", "e1")
	c.run()
	c.config(cfg(2, "", "a", "b", "c"), "a")
	c.propose("a", "e2")
	if len(c.queue) != 0 {
		t.Fatalf("the primary sent %d messages before any Hello of epoch 2", len(c.queue))
	}
	c.config(cfg(2, "", "a", "b", "c"), "b", "c")
	c.run()
	c.wantApplied("c", "e1", "e2")
	if a := c.node("a"); a.commit != 2 {
		t.Fatalf("commit %d, want 2", a.commit)
	}
}
