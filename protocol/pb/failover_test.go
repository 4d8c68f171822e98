package pb_test

import (
	"errors"
	"testing"

	"github.com/lockstep/lockstep/protocol/pb"
)

// dropEntriesTo returns a filter that drops MsgEntries to to carrying any
// entry above seq.
func dropEntriesTo(to string, seq uint64) func(pb.Message) bool {
	return func(m pb.Message) bool {
		return m.Type == pb.MsgEntries && m.To == to && len(m.Entries) > 0 && m.Entries[len(m.Entries)-1].Seq > seq
	}
}

// TestDeadBackupRemoved: a backup that stops acknowledging holds the
// commit point and then the window; once the coordinator removes it,
// commit proceeds and the primary's log drains.
func TestDeadBackupRemoved(t *testing.T) {
	o := small
	o.Window = 4
	c := newCluster(t, o, "a", "b", "c")
	c.config(cfg(1, "", "a", "b", "c"))
	c.run()
	c.propose("a", "e1")
	c.run()
	c.crash("c")
	for _, d := range seqs(2, 5) {
		c.propose("a", d)
	}
	c.run()
	if _, err := c.tryPropose("a", "e6"); !errors.Is(err, pb.ErrWindowFull) {
		t.Fatalf("proposal with c dead: %v, want ErrWindowFull", err)
	}
	if a := c.node("a"); a.commit != 1 {
		t.Fatalf("commit %d with c dead, want 1", a.commit)
	}
	c.config(cfg(2, "", "a", "b"), "a", "b")
	c.run()
	if a := c.node("a"); a.commit != 5 || c.status("a").Pending != 0 {
		t.Fatalf("after removing c: commit %d, pending %d; want 5, 0", a.commit, c.status("a").Pending)
	}
	c.propose("a", "e6")
	c.run()
	c.wantApplied("b", seqs(1, 6)...)
}

// TestPromotionResendsMissingSuffix: the backup promoted after the
// primary failed sends the other backup what it lacks from its own log,
// then commits what it inherited and continues numbering after it.
func TestPromotionResendsMissingSuffix(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.config(cfg(1, "", "a", "b", "c"))
	c.run()
	c.propose("a", "e1")
	c.propose("a", "e2")
	c.run()
	c.drop = dropEntriesTo("c", 2)
	c.propose("a", "e3")
	c.propose("a", "e4")
	c.run()
	c.drop = nil
	if a := c.node("a"); a.commit != 2 {
		t.Fatalf("commit %d before the failure, want 2", a.commit)
	}
	if st := c.status("b"); st.Pending != 2 || st.Commit != 2 || !st.Complete {
		t.Fatalf("backup b %+v: want it to keep e3, e4 above the commit point", st)
	}
	c.crash("a")
	c.config(cfg(2, "", "b", "c"))
	c.run()
	c.wantApplied("c", seqs(1, 4)...)
	if b := c.node("b"); b.commit != 4 || c.node("c").need != "" {
		t.Fatalf("new primary commit %d, c NeedSnapshot %q; want 4 and none", b.commit, c.node("c").need)
	}
	if seq := c.propose("b", "f5"); seq != 5 {
		t.Fatalf("the new primary proposed seq %d, want 5", seq)
	}
	c.run()
	c.wantApplied("c", append(seqs(1, 4), "f5")...)
	if st := c.status("b"); st.Role != pb.RolePrimary || st.Commit != 5 || st.Lineage != 2 || st.Pending != 0 {
		t.Fatalf("new primary %+v", st)
	}
}

// TestPromotedPrimaryAppliesFirst: a backup promoted with entries still
// to apply refuses proposals until it has applied them, and streams only
// what it applied.
func TestPromotedPrimaryAppliesFirst(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.node("b").manual = true
	c.config(cfg(1, "", "a", "b", "c"))
	c.run()
	c.drop = dropEntriesTo("c", 0)
	c.propose("a", "e1")
	c.propose("a", "e2")
	c.run()
	c.drop = nil
	c.crash("a")
	c.config(cfg(2, "", "b", "c"))
	c.run()
	if _, err := c.tryPropose("b", "f3"); !errors.Is(err, pb.ErrNotPrimary) {
		t.Fatalf("proposal with 2 entries unapplied: %v, want ErrNotPrimary", err)
	}
	if len(c.node("c").applied) != 0 {
		t.Fatalf("c applied %q that b has not applied", c.node("c").applied)
	}
	c.applyAll(c.node("b"))
	c.run()
	c.wantApplied("c", "e1", "e2")
	if seq := c.propose("b", "f3"); seq != 3 {
		t.Fatalf("seq %d, want 3", seq)
	}
}

// TestBackupAheadOfNewPrimary: a backup that received an entry the new
// primary never had (it was in flight when the coordinator chose) is told
// to fetch a snapshot and loses the divergent entry.
func TestBackupAheadOfNewPrimary(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.config(cfg(1, "", "a", "b", "c"))
	c.run()
	c.propose("a", "e1")
	c.run()
	c.drop = dropEntriesTo("b", 1)
	c.propose("a", "lost2")
	c.run()
	c.drop = nil
	c.wantApplied("c", "e1", "lost2")
	c.crash("a")
	c.config(cfg(2, "", "b", "c"))
	c.propose("b", "f2")
	c.run()
	if n := c.node("c"); n.need != "b" || c.node("b").commit > 1 {
		t.Fatalf("c NeedSnapshot %q, b commit %d; want a snapshot from b and no commit past 1", n.need, c.node("b").commit)
	}
	if !c.status("c").Complete {
		t.Fatal("c, which holds every committed entry, is not complete while it waits")
	}
	c.restore("c", "b")
	c.run()
	c.wantApplied("c", "e1", "f2")
	if b := c.node("b"); b.commit != 2 {
		t.Fatalf("commit %d after c restored, want 2", b.commit)
	}
	if st := c.status("c"); !st.Complete || !st.Synced || st.Applied != 2 {
		t.Fatalf("c after the snapshot: %+v", st)
	}
}

// TestDivergentLineage: after two failovers in a row, a backup whose log
// is as long as the new primary's but was written by another primary is
// not taken for a prefix: it gets a snapshot.
func TestDivergentLineage(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c", "d")
	c.config(cfg(1, "", "a", "b", "c", "d"))
	c.run()
	c.propose("a", "e1")
	c.run()
	c.drop = func(m pb.Message) bool { return dropEntriesTo("b", 1)(m) || dropEntriesTo("d", 1)(m) }
	c.propose("a", "x2") // only c gets it
	c.run()
	c.drop = nil
	c.crash("a")
	// b takes office; d syncs with it, c's Hello is lost.
	c.drop = func(m pb.Message) bool { return m.From == "c" }
	c.config(cfg(2, "", "b", "c", "d"))
	c.run()
	c.propose("b", "y2")
	c.run()
	c.drop = nil
	c.wantApplied("d", "e1", "y2")
	c.wantApplied("c", "e1", "x2")
	c.crash("b")
	c.config(cfg(3, "", "d", "c"))
	c.run()
	if n := c.node("c"); n.need != "d" {
		t.Fatalf("c (lineage %d, seq 2) under d (lineage %d): NeedSnapshot %q, want d",
			c.status("c").Lineage, c.status("d").Lineage, n.need)
	}
	c.restore("c", "d")
	c.run()
	c.wantApplied("c", "e1", "y2")
	if d := c.node("d"); d.commit != 2 {
		t.Fatalf("commit %d, want 2", d.commit)
	}
}

// TestJoinerSnapshotAndCatchUp: a fresh joiner fetches a snapshot from
// the primary, then streams; it does not count for commit until it is a
// backup, and it becomes complete only after hearing from the primary in
// its new role.
func TestJoinerSnapshotAndCatchUp(t *testing.T) {
	c := newCluster(t, small, "a", "b", "j")
	c.config(cfg(1, "", "a", "b"), "a", "b")
	c.run()
	for _, d := range seqs(1, 5) {
		c.propose("a", d)
	}
	c.run()
	c.config(cfg(2, "j", "a", "b"))
	c.run()
	if j := c.node("j"); j.need != "a" || c.status("j").CaughtUp {
		t.Fatalf("joiner NeedSnapshot %q, status %+v; want a snapshot from a", j.need, c.status("j"))
	}
	if seq := c.restore("j", "a"); seq != 5 {
		t.Fatalf("snapshot at %d, want 5", seq)
	}
	c.run()
	c.node("j").manual = true
	c.propose("a", "e6")
	c.propose("a", "e7")
	c.run()
	if a := c.node("a"); a.commit != 7 {
		t.Fatalf("commit %d with the joiner behind, want 7: a joiner does not count", a.commit)
	}
	if st := c.status("a"); st.Pending != 2 || !st.Peers[1].Joining || st.Peers[1].Lag != 2 {
		t.Fatalf("primary %+v: want e6, e7 kept for the joiner", st)
	}
	c.applyAll(c.node("j"))
	c.run()
	c.wantApplied("j", seqs(1, 7)...)
	if st := c.status("j"); !st.CaughtUp || st.Role != pb.RoleJoining || st.Complete {
		t.Fatalf("joiner %+v", st)
	}
	c.config(cfg(3, "", "a", "b", "j"), "j")
	if st := c.status("j"); st.Role != pb.RoleBackup || st.Complete {
		t.Fatalf("promoted joiner before hearing from the primary: %+v", st)
	}
	c.config(cfg(3, "", "a", "b", "j"), "a", "b")
	c.run()
	if st := c.status("j"); !st.Complete {
		t.Fatalf("promoted joiner after hearing from the primary: %+v", st)
	}
	c.propose("a", "e8")
	c.run()
	if a := c.node("a"); a.commit != 7 {
		t.Fatalf("commit %d with backup j behind, want 7", a.commit)
	}
	c.applyAll(c.node("j"))
	c.run()
	if a := c.node("a"); a.commit != 8 {
		t.Fatalf("commit %d, want 8", a.commit)
	}
}

// TestJoinerNeverPrimary: a joiner made primary directly is not complete
// and refuses proposals.
func TestJoinerNeverPrimary(t *testing.T) {
	c := newCluster(t, small, "a", "j")
	c.config(cfg(1, "j", "a"))
	c.run()
	c.propose("a", "e1")
	c.run()
	c.crash("a")
	c.config(cfg(2, "", "j"))
	if _, err := c.tryPropose("j", "f2"); !errors.Is(err, pb.ErrNotPrimary) {
		t.Fatalf("Propose at a promoted joiner: %v, want ErrNotPrimary", err)
	}
	if st := c.status("j"); st.Complete || st.ReadReady {
		t.Fatalf("promoted joiner %+v", st)
	}
}

// TestStaleSnapshotRefused: a snapshot is accepted only from the primary
// that asked for it, in the configuration in which it asked.
func TestStaleSnapshotRefused(t *testing.T) {
	c := newCluster(t, small, "a", "b", "j")
	c.config(cfg(1, "", "a", "b"), "a", "b")
	c.run()
	c.propose("a", "e1")
	c.run()
	c.config(cfg(2, "j", "a", "b"))
	c.run()
	j := c.node("j").core
	if j.AcceptsSnapshot("b") || !j.AcceptsSnapshot("a") {
		t.Fatal("the joiner accepts a snapshot from a backup, or not from the primary")
	}
	c.config(cfg(3, "j", "b"), "j")
	if j.AcceptsSnapshot("a") {
		t.Fatal("the joiner accepts a snapshot of the old primary in a new configuration")
	}
	j.Restored("a", 1)
	if st := j.Status(); st.Applied != 0 || st.Lineage != 0 {
		t.Fatalf("a refused snapshot was installed: %+v", st)
	}
}

// TestDemotedPrimary: an old primary that a configuration makes a backup
// (instead of removing it) is fenced like any backup: its entries the new
// primary never had are replaced by a snapshot, and it no longer commits.
func TestDemotedPrimary(t *testing.T) {
	c := newCluster(t, small, "a", "b")
	c.config(cfg(1, "", "a", "b"))
	c.run()
	c.propose("a", "e1")
	c.run()
	c.drop = dropEntriesTo("b", 1)
	c.propose("a", "x2")
	c.run()
	c.drop = nil
	c.config(cfg(2, "", "b", "a"))
	c.run()
	if n := c.node("a"); n.need != "b" || c.status("a").Role != pb.RoleBackup {
		t.Fatalf("demoted a: NeedSnapshot %q, status %+v", n.need, c.status("a"))
	}
	c.restore("a", "b")
	c.propose("b", "f2")
	c.run()
	c.wantApplied("a", "e1", "f2")
	if b, a := c.node("b"), c.node("a"); b.commit != 2 || a.commit != 1 {
		t.Fatalf("commit at b %d, at a %d; want 2 and still 1", b.commit, a.commit)
	}
}
