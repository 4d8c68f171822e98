package chain_test

import (
	"testing"

	"github.com/lockstep/lockstep/protocol/chain"
)

// dropN returns a filter that drops the first n messages matching match.
func dropN(n int, match func(chain.Message) bool) func(chain.Message) bool {
	return func(m chain.Message) bool {
		if n > 0 && match(m) {
			n--
			return true
		}
		return false
	}
}

func isType(t chain.MsgType, from string) func(chain.Message) bool {
	return func(m chain.Message) bool { return m.Type == t && m.From == from }
}

// TestLostEntriesResent: entries lost on the way are sent again from the
// oldest unacknowledged one after ResendTicks without ack progress.
func TestLostEntriesResent(t *testing.T) {
	c := newCluster(t, small, "a", "b")
	c.config(cfg(1, "", "a", "b"))
	c.run()
	c.drop = isType(chain.MsgEntries, "a")
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
		t.Fatalf("head commit %d, want 4", c.node("a").commit)
	}
}

// TestGapAsksAgain: a batch that does not continue the successor's log is
// dropped and the successor says Hello, without waiting for a timer.
func TestGapAsksAgain(t *testing.T) {
	c := newCluster(t, small, "a", "b")
	c.config(cfg(1, "", "a", "b"))
	c.run()
	c.drop = dropN(1, isType(chain.MsgEntries, "a"))
	for _, d := range seqs(1, 6) {
		c.propose("a", d)
	}
	c.run()
	c.wantApplied("b", seqs(1, 6)...)
}

// TestLostHelloResent: a successor that hears nothing from its predecessor
// says Hello again after HelloTicks.
func TestLostHelloResent(t *testing.T) {
	c := newCluster(t, small, "a", "b")
	c.drop = dropN(1, isType(chain.MsgHello, "b"))
	c.config(cfg(1, "", "a", "b"))
	c.propose("a", "e1")
	c.run()
	if len(c.node("b").applied) != 0 {
		t.Fatal("a streamed to b without its Hello")
	}
	c.tick("b", small.HelloTicks)
	c.run()
	c.wantApplied("b", "e1")
	c.queue = nil
	c.tick("b", 5*small.HelloTicks)
	if len(c.queue) != 0 {
		t.Fatalf("b sent %d messages while caught up", len(c.queue))
	}
}

// TestLostAcksRepeated: lost acks are repeated when the predecessor sends
// again, down a chain of three: the head's timer gets the middle to repeat
// its ack, and the middle's timer gets the tail to repeat its own.
func TestLostAcksRepeated(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.config(cfg(1, "", "a", "b", "c"))
	c.run()
	c.drop = func(m chain.Message) bool { return m.Type == chain.MsgAck }
	c.propose("a", "e1")
	c.propose("a", "e2")
	c.run()
	c.wantApplied("c", "e1", "e2")
	c.drop = nil
	for range 3 {
		c.tick("a", small.ResendTicks)
		c.tick("b", small.ResendTicks)
		c.run()
	}
	if a := c.node("a"); a.commit != 2 || c.status("a").Pending != 0 || c.status("b").Pending != 0 {
		t.Fatalf("head commit %d, logs %d and %d: want 2, 0, 0", a.commit, c.status("a").Pending, c.status("b").Pending)
	}
}

// TestHelloAfterEveryEpoch: a new configuration restarts the links even
// when the neighbours stay the same, and entries in flight in the old
// epoch are sent again in the new one.
func TestHelloAfterEveryEpoch(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.config(cfg(1, "", "a", "b", "c"))
	c.run()
	c.propose("a", "e1")
	c.propose("a", "e2")
	c.config(cfg(2, "", "a", "b", "c"), "b", "c") // a's entries of epoch 1 are now stale
	c.run()
	c.config(cfg(2, "", "a", "b", "c"), "a")
	c.run()
	c.tick("b", small.HelloTicks) // b's Hello of epoch 2 reached a before a's configuration
	c.run()
	c.wantApplied("c", "e1", "e2")
	if c.node("a").commit != 2 {
		t.Fatalf("head commit %d, want 2", c.node("a").commit)
	}
}
