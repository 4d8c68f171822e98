package chain_test

import (
	"testing"

	"github.com/lockstep/lockstep/protocol/chain"
)

// acksTo returns the seqs of the queued acks addressed to the named replica.
func acksTo(q []chain.Message, to string) []uint64 {
	var seqs []uint64
	for _, m := range q {
		if m.Type == chain.MsgAck && m.To == to {
			seqs = append(seqs, m.Seq)
		}
	}
	return seqs
}

// deliverAll delivers every queued message once, without what they cause.
func deliverAll(t *testing.T, c *cluster) {
	t.Helper()
	for n := len(c.Queue); n > 0; n-- {
		if _, _, err := c.Deliver(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTailAcksHeadDirectly checks that in a chain of three the tail's ack
// goes straight to the head, which commits on it, while the middle hears
// from the tail only on a tick.
func TestTailAcksHeadDirectly(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.Config(cfg(1, "", "a", "b", "c"))
	c.Run()
	c.Propose("a", "e1")
	for c.Node("c").Core.Detail().Applied < 1 {
		if _, ok, err := c.Deliver(); !ok || err != nil {
			t.Fatalf("e1 never reached the tail: %v", err)
		}
	}
	if got := acksTo(c.Queue, "a"); len(got) != 1 || got[0] != 1 {
		t.Fatalf("the tail queued acks %v to the head, want [1]", got)
	}
	if got := acksTo(c.Queue, "b"); len(got) != 0 {
		t.Fatalf("the tail acked the middle at once (%v); that ack should wait for a tick", got)
	}
	deliverAll(t, c)
	if a := c.Node("a"); a.Commit != 1 {
		t.Fatalf("head commit %d after the tail's direct ack, want 1", a.Commit)
	}
	c.Tick("c", 1)
	if got := acksTo(c.Queue, "b"); len(got) != 1 || got[0] != 1 {
		t.Fatalf("after a tick the tail queued acks %v to the middle, want [1]", got)
	}
	c.Run()
	if st := c.status("b"); st.Pending != 0 {
		t.Fatalf("the middle still holds %d entries after the tail's ack", st.Pending)
	}
}

// TestTwoMembersAckAtOnce checks that a tail right behind the head acks it
// at once, and only once.
func TestTwoMembersAckAtOnce(t *testing.T) {
	c := newCluster(t, small, "a", "b")
	c.Config(cfg(1, "", "a", "b"))
	c.Run()
	c.Propose("a", "e1")
	c.Deliver()
	if got := acksTo(c.Queue, "a"); len(got) != 1 || got[0] != 1 {
		t.Fatalf("the tail of two queued acks %v, want [1]", got)
	}
}

// TestMiddleLearnsHeadAck checks that a middle trims its log from the
// Acked of the head's next batch when the tail's lazy acks never come.
func TestMiddleLearnsHeadAck(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.Drop = func(m chain.Message) bool { return m.Type == chain.MsgAck && m.To == "b" }
	c.Config(cfg(1, "", "a", "b", "c"))
	c.Run()
	for _, d := range seqs(1, 3) {
		c.Propose("a", d)
	}
	c.Run()
	c.Tick("c", 1)
	c.Run()
	if st := c.status("b"); st.Pending != 3 {
		t.Fatalf("middle holds %d entries with every ack to it dropped, want 3", st.Pending)
	}
	c.Propose("a", "e4")
	c.Run()
	if st := c.status("b"); st.Pending != 1 {
		t.Fatalf("middle holds %d entries after a batch that carries the head's ack 3, want 1", st.Pending)
	}
	c.WantApplied("c", seqs(1, 4)...)
	if a := c.Node("a"); a.Commit != 4 {
		t.Fatalf("head commit %d, want 4", a.Commit)
	}
}

// TestStaleHelloAfterDirectAck checks that a Hello from the middle that
// reports less than the head already trimmed (the tail's direct ack
// overtook it) is served from what the acks proved, not answered with
// MsgSnapshotNeeded.
func TestStaleHelloAfterDirectAck(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.Config(cfg(1, "", "a", "b", "c"))
	c.Run()
	for _, d := range seqs(1, 3) {
		c.Propose("a", d)
	}
	c.Run()
	if st := c.status("a"); st.Pending != 0 || st.Commit != 3 {
		t.Fatalf("head %+v: want everything acknowledged and trimmed", st)
	}
	if err := c.Node("a").Core.StepMessage(chain.Message{Type: chain.MsgHello, From: "b", To: "a", Epoch: 1, Seq: 1}); err != nil {
		t.Fatal(err)
	}
	c.Collect(c.Node("a"))
	for _, m := range c.Queue {
		if m.Type == chain.MsgSnapshotNeeded {
			t.Fatalf("a stale Hello got %+v", m)
		}
	}
	c.Run()
	c.Propose("a", "e4")
	c.Run()
	c.WantApplied("c", seqs(1, 4)...)
}
