package chain_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/lockstep/lockstep/protocol/chain"
)

// dropEntriesFrom returns a filter that drops MsgEntries sent by from
// carrying any entry above seq.
func dropEntriesFrom(from string, seq uint64) func(chain.Message) bool {
	return func(m chain.Message) bool {
		return m.Type == chain.MsgEntries && m.From == from && len(m.Entries) > 0 && m.Entries[len(m.Entries)-1].Seq > seq
	}
}

// TestHeadFailure: the old successor becomes head, keeps its log and
// continues numbering from its last seq; what only the old head had was
// never committed and is replaced.
func TestHeadFailure(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.Config(cfg(1, "", "a", "b", "c"))
	c.Run()
	c.Propose("a", "e1")
	c.Propose("a", "e2")
	c.Run()
	c.Drop = dropEntriesFrom("b", 2)
	c.Propose("a", "e3")
	c.Propose("a", "e4")
	c.Run()
	c.Drop = dropEntriesFrom("a", 4)
	c.Propose("a", "lost5")
	c.Run()
	if a := c.Node("a"); a.Commit != 2 {
		t.Fatalf("head commit %d before the failure, want 2", a.Commit)
	}
	c.Crash("a")
	c.Drop = nil
	c.Config(cfg(2, "", "b", "c"))
	c.Run()
	if seq := c.Propose("b", "f5"); seq != 5 {
		t.Fatalf("the new head proposed seq %d, want 5", seq)
	}
	c.Run()
	want := append(seqs(1, 4), "f5")
	c.WantApplied("b", want...)
	c.WantApplied("c", want...)
	if b := c.Node("b"); b.Commit != 5 || c.status("b").Role != chain.RoleHead {
		t.Fatalf("new head %+v, commit %d; want head with commit 5", c.status("b"), b.Commit)
	}
}

// TestMiddleFailure: the new successor says Hello to its new predecessor,
// which sends again from its log; nothing in flight is lost.
func TestMiddleFailure(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.Config(cfg(1, "", "a", "b", "c"))
	c.Run()
	c.Propose("a", "e1")
	c.Propose("a", "e2")
	c.Run()
	c.Drop = dropEntriesFrom("b", 2)
	c.Propose("a", "e3")
	c.Propose("a", "e4")
	c.Run()
	if st := c.status("a"); st.Pending != 2 || c.Node("a").Commit != 2 {
		t.Fatalf("head %+v: want 2 unacknowledged entries, commit 2", st)
	}
	c.Crash("b")
	c.Drop = nil
	c.Config(cfg(2, "", "a", "c"))
	c.Run()
	c.WantApplied("c", seqs(1, 4)...)
	if st := c.status("a"); c.Node("a").Commit != 4 || st.Pending != 0 || st.Successor != "c" {
		t.Fatalf("head %+v, commit %d: want commit 4, empty log, successor c", st, c.Node("a").Commit)
	}
}

// TestTailFailure: the predecessor becomes tail, everything it applied is
// committed, and it acks upstream.
func TestTailFailure(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.Config(cfg(1, "", "a", "b", "c"))
	c.Run()
	c.Propose("a", "e1")
	c.Propose("a", "e2")
	c.Run()
	c.Drop = dropEntriesFrom("b", 2)
	c.Propose("a", "e3")
	c.Propose("a", "e4")
	c.Run()
	c.Crash("c")
	c.Drop = nil
	c.Config(cfg(2, "", "a", "b"))
	c.Run()
	if a := c.Node("a"); a.Commit != 4 {
		t.Fatalf("head commit %d after the tail failed, want 4", a.Commit)
	}
	if st := c.status("b"); st.Role != chain.RoleTail || !st.ReadReady || st.Commit != 4 {
		t.Fatalf("new tail %+v", st)
	}
}

// TestJoinerSnapshotAndPromotion: a fresh joiner is told to fetch a
// snapshot, catches up behind the tail, and becomes the tail.
func TestJoinerSnapshotAndPromotion(t *testing.T) {
	c := newCluster(t, small, "a", "b", "j")
	c.Config(cfg(1, "", "a", "b"), "a", "b")
	c.Run()
	for _, d := range seqs(1, 5) {
		c.Propose("a", d)
	}
	c.Run()
	if st := c.status("b"); st.Pending != 0 {
		t.Fatalf("a tail without joiner keeps %d entries", st.Pending)
	}
	c.Config(cfg(2, "j", "a", "b"))
	c.Run()
	if j := c.Node("j"); j.Need != "b" || c.status("j").CaughtUp {
		t.Fatalf("joiner NeedSnapshot %q, status %+v; want a snapshot from b", j.Need, c.status("j"))
	}
	if seq := c.Restore("j", "b"); seq != 5 {
		t.Fatalf("snapshot at %d, want 5", seq)
	}
	c.Run()
	c.Propose("a", "e6")
	c.Propose("a", "e7")
	c.Run()
	c.WantApplied("j", seqs(1, 7)...)
	if st := c.status("j"); !st.CaughtUp || st.Role != chain.RoleJoining || st.ReadReady || st.Complete {
		t.Fatalf("joiner %+v", st)
	}
	if st := c.status("b"); st.Pending != 0 {
		t.Fatalf("the tail keeps %d entries the joiner acknowledged", st.Pending)
	}
	c.Config(cfg(3, "", "a", "b", "j"))
	c.Run()
	c.Propose("a", "e8")
	c.Run()
	c.WantApplied("j", seqs(1, 8)...)
	if st := c.status("j"); st.Role != chain.RoleTail || !st.ReadReady || c.status("b").ReadReady || c.Node("a").Commit != 8 {
		t.Fatalf("after promotion: j %+v, b %+v, head commit %d", st, c.status("b"), c.Node("a").Commit)
	}
}

// TestJoinWindowSingle: a single member with a joiner that applies nothing
// stops taking writes JoinWindow+Window entries ahead of it.
func TestJoinWindowSingle(t *testing.T) {
	o := small
	o.Window, o.JoinWindow = 4, 2
	c := newCluster(t, o, "a", "j")
	c.Node("j").Manual = true
	c.Config(cfg(1, "j", "a"))
	c.Run()
	n := 0
	for ; n < 20; n++ {
		if _, err := c.TryPropose("a", "x"); errors.Is(err, chain.ErrWindowFull) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		c.Run()
	}
	if n != 6 || c.Node("a").Commit != 6 {
		t.Fatalf("took %d writes with commit %d, want 6 (JoinWindow 2 + Window 4) all committed", n, c.Node("a").Commit)
	}
	c.ApplyAll(c.Node("j"))
	c.Run()
	if _, err := c.TryPropose("a", "x"); err != nil {
		t.Fatalf("Propose after the joiner caught up: %v", err)
	}
}

// TestJoinWindowTail: a tail holds its acks JoinWindow beyond a joiner
// that applies nothing, so the head's commit point waits.
func TestJoinWindowTail(t *testing.T) {
	o := small
	o.JoinWindow = 2
	c := newCluster(t, o, "a", "b", "j")
	c.Node("j").Manual = true
	c.Config(cfg(1, "j", "a", "b"))
	c.Run()
	for _, d := range seqs(1, 6) {
		c.Propose("a", d)
	}
	c.Run()
	if a := c.Node("a"); a.Commit != 2 || c.status("b").Commit != 6 {
		t.Fatalf("head commit %d, tail commit %d: want 2 (held), 6", a.Commit, c.status("b").Commit)
	}
	c.ApplyAll(c.Node("j"))
	c.Run()
	if a := c.Node("a"); a.Commit != 6 {
		t.Fatalf("head commit %d after the joiner applied, want 6", a.Commit)
	}
}

// TestHoldKeepsEntriesForJoiner: a snapshot served before the joiner's
// configuration reaches the server is not wasted: Hold keeps the entries
// after it.
func TestHoldKeepsEntriesForJoiner(t *testing.T) {
	c := newCluster(t, small, "a", "j")
	c.Config(cfg(1, "", "a"), "a")
	for _, d := range seqs(1, 3) {
		c.Propose("a", d)
	}
	c.Node("a").Core.Hold(3)
	for _, d := range seqs(4, 6) {
		c.Propose("a", d)
	}
	if st := c.status("a"); st.Pending != 3 {
		t.Fatalf("a holds %d entries after Hold(3), want 3", st.Pending)
	}
	c.Config(cfg(2, "j", "a"))
	c.Run()
	j := c.Node("j")
	if j.Need != "a" {
		t.Fatalf("joiner NeedSnapshot %q, want a", j.Need)
	}
	j.Applied, j.Need = seqs(1, 3), ""
	j.Core.Restored("", 3)
	c.Collect(j)
	c.Run()
	if j.Need != "" {
		t.Fatalf("a second snapshot was needed from %q", j.Need)
	}
	c.WantApplied("j", seqs(1, 6)...)
	if st := c.status("a"); st.Pending != 0 {
		t.Fatalf("a still holds %d entries after the joiner acknowledged them", st.Pending)
	}
}

// TestStaleSnapshotNeededIgnored: a MsgSnapshotNeeded that answered an old
// Hello does not start another transfer once the joiner restored.
func TestStaleSnapshotNeededIgnored(t *testing.T) {
	c := newCluster(t, small, "a", "j")
	c.Config(cfg(1, "", "a"), "a")
	for _, d := range seqs(1, 5) {
		c.Propose("a", d)
	}
	c.Config(cfg(2, "j", "a"))
	c.Run()
	c.Restore("j", "a")
	c.Run()
	err := c.Node("j").Core.StepMessage(chain.Message{Type: chain.MsgSnapshotNeeded, From: "a", To: "j", Epoch: 2, Seq: 5})
	if err != nil || c.Node("j").Core.Ready().NeedSnapshot != "" {
		t.Fatalf("a stale MsgSnapshotNeeded: %v, or it asked for another snapshot", err)
	}
}

// TestRestoredRefusedWhenComplete: a member that holds every committed
// entry never installs a snapshot.
func TestRestoredRefusedWhenComplete(t *testing.T) {
	c := newCluster(t, small, "a", "b")
	c.Config(cfg(1, "", "a", "b"))
	c.Run()
	c.Propose("a", "e1")
	c.Run()
	before := c.status("b")
	if c.Node("b").Core.AcceptsSnapshot("", 9) {
		t.Fatal("a complete member accepts a snapshot")
	}
	c.Node("b").Core.Restored("", 9)
	if after := c.status("b"); after != before {
		t.Fatalf("Restored changed a complete member: %+v -> %+v", before, after)
	}
}

// promotedLagging builds a-t with joiner j1 that received entries but
// applied only some, then promotes j1 while t, still in the old epoch, has
// committed them all.
func promotedLagging(t *testing.T) *cluster {
	o := small
	o.JoinWindow = 8
	c := newCluster(t, o, "a", "t", "j1", "j2")
	c.Node("j1").Manual = true
	c.Config(cfg(1, "j1", "a", "t"))
	c.Run()
	c.Drop = dropEntriesFrom("t", 2)
	for _, d := range seqs(1, 6) {
		c.Propose("a", d)
	}
	c.Run()
	c.ApplyAll(c.Node("j1"))
	c.Run()
	if a := c.Node("a"); a.Commit != 6 || c.status("j1").Applied != 2 {
		t.Fatalf("head commit %d, j1 applied %d: want 6 and 2", a.Commit, c.status("j1").Applied)
	}
	c.Config(cfg(2, "", "a", "t", "j1"), "j1")
	return c
}

// TestPromotedJoinerBarrier: a promoted joiner may lack entries the old
// tail committed; it is not complete, serves no reads and cannot lead
// until its predecessor speaks in the new epoch and it reaches that seq.
func TestPromotedJoinerBarrier(t *testing.T) {
	c := promotedLagging(t)
	if st := c.status("j1"); st.Role != chain.RoleTail || st.Complete || st.ReadReady {
		t.Fatalf("promoted joiner %+v: want an incomplete tail", st)
	}
	c.Config(cfg(3, "", "j1"), "j1") // every other member lost: j1 must not lead
	if _, err := c.TryPropose("j1", "x"); !errors.Is(err, chain.ErrNotHead) {
		t.Fatalf("Propose at an incomplete single member: %v, want ErrNotHead", err)
	}
	c = promotedLagging(t)
	c.Drop = nil
	c.Config(cfg(2, "", "a", "t", "j1"), "a", "t")
	c.Run()
	c.ApplyAll(c.Node("j1"))
	c.Run()
	if st := c.status("j1"); !st.Complete || !st.ReadReady || st.Applied != 6 {
		t.Fatalf("j1 %+v: want a complete tail at 6", st)
	}
}

// TestTransitiveBarrier: a joiner promoted behind a promoted joiner that
// is not complete inherits its barrier, since neither holds entries the
// old tail committed.
func TestTransitiveBarrier(t *testing.T) {
	c := promotedLagging(t)
	c.Config(cfg(2, "", "a", "t", "j1"), "t")
	c.Run()
	c.Drop = dropEntriesFrom("t", 4)
	c.Tick("j1", small.HelloTicks) // its first Hello reached t before t's configuration
	c.Run()                        // t sends 3..4 (then 5..6, lost) with Seq 6: j1's barrier
	c.ApplyAll(c.Node("j1"))
	if st := c.status("j1"); st.Complete || st.Applied != 4 || st.Last != 4 {
		t.Fatalf("j1 %+v: want incomplete with 1..4", st)
	}
	c.Config(cfg(3, "j2", "a", "t", "j1"), "j1", "j2")
	c.Run()
	c.Restore("j2", "j1")
	c.Run()
	if st := c.status("j2"); st.CaughtUp {
		t.Fatalf("j2 %+v is caught up before j1 reached its barrier", st)
	}
	c.Config(cfg(4, "", "a", "t", "j1", "j2"), "j1", "j2")
	c.Run()
	if st := c.status("j2"); st.Complete || st.ReadReady {
		t.Fatalf("j2 %+v is complete below the old tail's commit point", st)
	}
	c.Drop = nil
	c.Config(cfg(4, "", "a", "t", "j1", "j2"), "a", "t")
	c.Run()
	c.Tick("j1", small.HelloTicks) // its Hello of epoch 4 reached t before t's configuration
	c.Run()
	c.ApplyAll(c.Node("j1"))
	c.Run()
	if st := c.status("j2"); !st.Complete || !st.ReadReady || st.Applied != 6 {
		t.Fatalf("j2 %+v: want a complete tail at 6", st)
	}
	if !slices.Equal(c.Node("j2").Applied, seqs(1, 6)) || c.status("j1").Applied != 6 {
		t.Fatalf("j2 applied %q", c.Node("j2").Applied)
	}
}

// TestRestartedMemberBarrier: a group re-formed after a total outage
// runs on the state its members kept (Options.Restarted), and a member's
// kept state may lag what the group committed. A member with a
// predecessor is therefore not complete, and as tail serves no reads,
// until its predecessor's first message of the configuration has told it
// how far to go and it has applied that far; the head, with no one
// upstream, is complete at once. Without Restarted, a member of the first
// configuration is complete at once.
func TestRestartedMemberBarrier(t *testing.T) {
	o := small
	o.Restarted = true
	c := newCluster(t, o)
	c.Add("a", 3)
	c.Add("b", 3).Manual = true
	c.Config(cfg(1, "", "a", "b"))
	if st := c.status("a"); st.Role != chain.RoleHead || !st.Complete {
		t.Fatalf("restarted head %+v: want complete at once", st)
	}
	if st := c.status("b"); st.Role != chain.RoleTail || st.Complete || st.ReadReady {
		t.Fatalf("restarted tail before a spoke: %+v, want incomplete", st)
	}
	c.Propose("a", "e4")
	c.Run() // a answers b's Hello with e4, reporting 4: b's barrier
	if st := c.status("b"); st.Complete || st.ReadReady || st.Applied != 3 {
		t.Fatalf("restarted tail told 4, applied 3: %+v, want incomplete", st)
	}
	c.ApplyAll(c.Node("b"))
	c.Run()
	if st := c.status("b"); !st.Complete || !st.ReadReady || st.Applied != 4 || c.Node("a").Commit != 4 {
		t.Fatalf("restarted tail at its barrier: %+v, head commit %d; want a complete tail, commit 4", st, c.Node("a").Commit)
	}

	c = newCluster(t, small)
	c.Add("a", 3)
	c.Add("b", 3)
	c.Config(cfg(1, "", "a", "b"))
	if st := c.status("b"); !st.Complete || !st.ReadReady {
		t.Fatalf("tail of a first configuration, not restarted: %+v, want complete at once", st)
	}
}

// TestSnapshotWaitEndsByApplying: a promoted member told to fetch a
// snapshot may instead reach what its new predecessor can serve by
// applying entries it already received; it then says Hello again instead
// of waiting for a snapshot it would refuse.
func TestSnapshotWaitEndsByApplying(t *testing.T) {
	o := small
	o.JoinWindow = 8
	c := newCluster(t, o, "a", "t", "j")
	c.Node("j").Manual = true
	c.Config(cfg(1, "j", "a", "t"))
	c.Run()
	for _, d := range seqs(1, 3) {
		c.Propose("a", d)
	}
	c.Run()
	if st := c.status("a"); st.Pending != 0 || c.status("j").Applied != 0 {
		t.Fatalf("head %+v: want everything acknowledged while j applied nothing", st)
	}
	c.Config(cfg(2, "", "a", "t", "j"))
	c.Run()
	c.Crash("t")
	c.Config(cfg(3, "", "a", "j"))
	c.Run()
	if j := c.Node("j"); j.Need != "a" {
		t.Fatalf("j NeedSnapshot %q, want a", j.Need)
	}
	c.ApplyAll(c.Node("j"))
	c.Run()
	c.Propose("a", "e4")
	c.Run()
	c.ApplyAll(c.Node("j"))
	c.Run()
	c.WantApplied("j", seqs(1, 4)...)
	if st := c.status("j"); !st.Complete || c.Node("a").Commit != 4 || c.Node("j").Core.AcceptsSnapshot("", 4) {
		t.Fatalf("j %+v, head commit %d: want complete, commit 4", st, c.Node("a").Commit)
	}
}
