package chain_test

import (
	"testing"

	"github.com/lockstep/lockstep/protocol/chain"
	"github.com/lockstep/lockstep/sim"
)

func isType(t chain.MsgType, from string) func(chain.Message) bool {
	return func(m chain.Message) bool { return m.Type == t && m.From == from }
}

// TestLostEntriesResent: entries lost on the way are sent again from the
// oldest unacknowledged one after ResendTicks without ack progress.
func TestLostEntriesResent(t *testing.T) {
	c := newCluster(t, small, "a", "b")
	c.Config(cfg(1, "", "a", "b"))
	c.LostEntriesResent("a", "b", small.ResendTicks, isType(chain.MsgEntries, "a"))
}

// TestGapAsksAgain: a batch that does not continue the follower's log is
// dropped and the follower says Hello, without waiting for a timer.
func TestGapAsksAgain(t *testing.T) {
	c := newCluster(t, small, "a", "b")
	c.Config(cfg(1, "", "a", "b"))
	c.GapAsksAgain("a", "b", isType(chain.MsgEntries, "a"))
}

// TestLostHelloResent: a successor that hears nothing from its predecessor
// says Hello again after HelloTicks.
func TestLostHelloResent(t *testing.T) {
	c := newCluster(t, small, "a", "b")
	c.Drop = sim.DropN(1, isType(chain.MsgHello, "b"))
	c.Config(cfg(1, "", "a", "b"))
	c.Propose("a", "e1")
	c.Run()
	if len(c.Node("b").Applied) != 0 {
		t.Fatal("a streamed to b without its Hello")
	}
	c.Tick("b", small.HelloTicks)
	c.Run()
	c.WantApplied("b", "e1")
	c.Queue = nil
	c.Tick("b", 5*small.HelloTicks)
	if len(c.Queue) != 0 {
		t.Fatalf("b sent %d messages while caught up", len(c.Queue))
	}
}

// TestLostAcksRepeated: lost acks are repeated when the predecessor sends
// again, down a chain of three: the head's timer gets the middle to repeat
// its ack, and the middle's timer gets the tail to repeat its own.
func TestLostAcksRepeated(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.Config(cfg(1, "", "a", "b", "c"))
	c.Run()
	c.Drop = func(m chain.Message) bool { return m.Type == chain.MsgAck }
	c.Propose("a", "e1")
	c.Propose("a", "e2")
	c.Run()
	c.WantApplied("c", "e1", "e2")
	c.Drop = nil
	for range 3 {
		c.Tick("a", small.ResendTicks)
		c.Tick("b", small.ResendTicks)
		c.Run()
	}
	if a := c.Node("a"); a.Commit != 2 || c.status("a").Pending != 0 || c.status("b").Pending != 0 {
		t.Fatalf("head commit %d, logs %d and %d: want 2, 0, 0", a.Commit, c.status("a").Pending, c.status("b").Pending)
	}
}

// TestHelloAfterEveryEpoch: a new configuration restarts the links even
// when the neighbours stay the same, and entries in flight in the old
// epoch are sent again in the new one.
func TestHelloAfterEveryEpoch(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.Config(cfg(1, "", "a", "b", "c"))
	c.Run()
	c.Propose("a", "e1")
	c.Propose("a", "e2")
	c.Config(cfg(2, "", "a", "b", "c"), "b", "c") // a's entries of epoch 1 are now stale
	c.Run()
	c.Config(cfg(2, "", "a", "b", "c"), "a")
	c.Run()
	c.Tick("b", small.HelloTicks) // b's Hello of epoch 2 reached a before a's configuration
	c.Run()
	c.WantApplied("c", "e1", "e2")
	if c.Node("a").Commit != 2 {
		t.Fatalf("head commit %d, want 2", c.Node("a").Commit)
	}
}

// TestLostHelloAfterSnapshot: a joiner's Hello after it restored a
// snapshot is lost, and it believes itself caught up (it had heard the
// tail's last seq before the snapshot), so it does not say Hello again;
// the tail, waiting for that Hello, sends it nothing, not even its next
// entry. The tail asks again (MsgSnapshotNeeded) after ResendTicks, the
// joiner answers with its position, and the entries flow. Found by the
// whole-node simulation after a total outage, where a cut swallowed the
// Hello.
func TestLostHelloAfterSnapshot(t *testing.T) {
	c := newCluster(t, small, "a", "j")
	c.Config(cfg(1, "", "a"), "a")
	for _, d := range seqs(1, 5) {
		c.Propose("a", d)
	}
	c.Config(cfg(2, "j", "a"))
	c.Run()
	if j := c.Node("j"); j.Need != "a" {
		t.Fatalf("joiner NeedSnapshot %q, want a", j.Need)
	}
	c.Propose("a", "e6")
	c.Propose("a", "e7")
	c.Run()
	// The joiner hears the tail's last seq while it waits for the snapshot
	// (in the simulation, entries sent just before MsgSnapshotNeeded).
	if err := c.Node("j").Core.StepMessage(chain.Message{Type: chain.MsgEntries, From: "a", To: "j", Epoch: 2, Seq: 7}); err != nil {
		t.Fatal(err)
	}
	c.Drop = sim.DropN(1, isType(chain.MsgHello, "j"))
	if seq := c.Restore("j", "a"); seq != 7 {
		t.Fatalf("snapshot at %d, want 7", seq)
	}
	c.Run()
	c.Drop = nil
	c.Propose("a", "e8")
	c.Run()
	for range 3 {
		c.Tick("a", small.ResendTicks)
		c.Tick("j", small.HelloTicks)
		c.Run()
	}
	if st := c.status("j"); st.Applied != 8 {
		t.Fatalf("joiner applied %d, want 8: the tail never streamed to it again", st.Applied)
	}
}
