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
	c.Config(cfg(1, "", "a", "b", "c"))
	c.Run()
	c.Propose("a", "e1")
	c.Run()
	c.Crash("c")
	for _, d := range seqs(2, 5) {
		c.Propose("a", d)
	}
	c.Run()
	if _, err := c.TryPropose("a", "e6"); !errors.Is(err, pb.ErrWindowFull) {
		t.Fatalf("proposal with c dead: %v, want ErrWindowFull", err)
	}
	if a := c.Node("a"); a.Commit != 1 {
		t.Fatalf("commit %d with c dead, want 1", a.Commit)
	}
	c.Config(cfg(2, "", "a", "b"), "a", "b")
	c.Run()
	if a := c.Node("a"); a.Commit != 5 || c.status("a").Pending != 0 {
		t.Fatalf("after removing c: commit %d, pending %d; want 5, 0", a.Commit, c.status("a").Pending)
	}
	c.Propose("a", "e6")
	c.Run()
	c.WantApplied("b", seqs(1, 6)...)
}

// TestPromotionResendsMissingSuffix: the backup promoted after the
// primary failed sends the other backup what it lacks from its own log,
// then commits what it inherited and continues numbering after it.
func TestPromotionResendsMissingSuffix(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.Config(cfg(1, "", "a", "b", "c"))
	c.Run()
	c.Propose("a", "e1")
	c.Propose("a", "e2")
	c.Run()
	c.Drop = dropEntriesTo("c", 2)
	c.Propose("a", "e3")
	c.Propose("a", "e4")
	c.Run()
	c.Drop = nil
	if a := c.Node("a"); a.Commit != 2 {
		t.Fatalf("commit %d before the failure, want 2", a.Commit)
	}
	if st := c.status("b"); st.Pending != 2 || st.Commit != 2 || !st.Complete {
		t.Fatalf("backup b %+v: want it to keep e3, e4 above the commit point", st)
	}
	c.Crash("a")
	c.Config(cfg(2, "", "b", "c"))
	c.Run()
	c.WantApplied("c", seqs(1, 4)...)
	if b := c.Node("b"); b.Commit != 4 || c.Node("c").Need != "" {
		t.Fatalf("new primary commit %d, c NeedSnapshot %q; want 4 and none", b.Commit, c.Node("c").Need)
	}
	if seq := c.Propose("b", "f5"); seq != 5 {
		t.Fatalf("the new primary proposed seq %d, want 5", seq)
	}
	c.Run()
	c.WantApplied("c", append(seqs(1, 4), "f5")...)
	if st := c.status("b"); st.Role != pb.RolePrimary || st.Commit != 5 || st.Lineage != 2 || st.Pending != 0 {
		t.Fatalf("new primary %+v", st)
	}
}

// TestPromotedPrimaryAppliesFirst: a backup promoted with entries still
// to apply refuses proposals until it has applied them, and streams only
// what it applied.
func TestPromotedPrimaryAppliesFirst(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.Node("b").Manual = true
	c.Config(cfg(1, "", "a", "b", "c"))
	c.Run()
	c.Drop = dropEntriesTo("c", 0)
	c.Propose("a", "e1")
	c.Propose("a", "e2")
	c.Run()
	c.Drop = nil
	c.Crash("a")
	c.Config(cfg(2, "", "b", "c"))
	c.Run()
	if _, err := c.TryPropose("b", "f3"); !errors.Is(err, pb.ErrNotPrimary) {
		t.Fatalf("proposal with 2 entries unapplied: %v, want ErrNotPrimary", err)
	}
	if len(c.Node("c").Applied) != 0 {
		t.Fatalf("c applied %q that b has not applied", c.Node("c").Applied)
	}
	c.ApplyAll(c.Node("b"))
	c.Run()
	c.WantApplied("c", "e1", "e2")
	if seq := c.Propose("b", "f3"); seq != 3 {
		t.Fatalf("seq %d, want 3", seq)
	}
}

// TestBackupAheadOfNewPrimary: a backup that received an entry the new
// primary never had (it was in flight when the coordinator chose) is told
// to fetch a snapshot and loses the divergent entry.
func TestBackupAheadOfNewPrimary(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.Config(cfg(1, "", "a", "b", "c"))
	c.Run()
	c.Propose("a", "e1")
	c.Run()
	c.Drop = dropEntriesTo("b", 1)
	c.Propose("a", "lost2")
	c.Run()
	c.Drop = nil
	c.WantApplied("c", "e1", "lost2")
	c.Crash("a")
	c.Config(cfg(2, "", "b", "c"))
	c.Propose("b", "f2")
	c.Run()
	if n := c.Node("c"); n.Need != "b" || c.Node("b").Commit > 1 {
		t.Fatalf("c NeedSnapshot %q, b commit %d; want a snapshot from b and no commit past 1", n.Need, c.Node("b").Commit)
	}
	if !c.status("c").Complete {
		t.Fatal("c, which holds every committed entry, is not complete while it waits")
	}
	c.Restore("c", "b")
	c.Run()
	c.WantApplied("c", "e1", "f2")
	if b := c.Node("b"); b.Commit != 2 {
		t.Fatalf("commit %d after c restored, want 2", b.Commit)
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
	c.Config(cfg(1, "", "a", "b", "c", "d"))
	c.Run()
	c.Propose("a", "e1")
	c.Run()
	c.Drop = func(m pb.Message) bool { return dropEntriesTo("b", 1)(m) || dropEntriesTo("d", 1)(m) }
	c.Propose("a", "x2") // only c gets it
	c.Run()
	c.Drop = nil
	c.Crash("a")
	// b takes office; d syncs with it, c's Hello is lost.
	c.Drop = func(m pb.Message) bool { return m.From == "c" }
	c.Config(cfg(2, "", "b", "c", "d"))
	c.Run()
	c.Propose("b", "y2")
	c.Run()
	c.Drop = nil
	c.WantApplied("d", "e1", "y2")
	c.WantApplied("c", "e1", "x2")
	c.Crash("b")
	c.Config(cfg(3, "", "d", "c"))
	c.Run()
	if n := c.Node("c"); n.Need != "d" {
		t.Fatalf("c (lineage %d, seq 2) under d (lineage %d): NeedSnapshot %q, want d",
			c.status("c").Lineage, c.status("d").Lineage, n.Need)
	}
	c.Restore("c", "d")
	c.Run()
	c.WantApplied("c", "e1", "y2")
	if d := c.Node("d"); d.Commit != 2 {
		t.Fatalf("commit %d, want 2", d.Commit)
	}
}

// TestJoinerSnapshotAndCatchUp: a fresh joiner fetches a snapshot from
// the primary, then streams; it does not count for commit until it is a
// backup, and it becomes complete only after hearing from the primary in
// its new role.
func TestJoinerSnapshotAndCatchUp(t *testing.T) {
	c := newCluster(t, small, "a", "b", "j")
	c.Config(cfg(1, "", "a", "b"), "a", "b")
	c.Run()
	for _, d := range seqs(1, 5) {
		c.Propose("a", d)
	}
	c.Run()
	c.Config(cfg(2, "j", "a", "b"))
	c.Run()
	if j := c.Node("j"); j.Need != "a" || c.status("j").CaughtUp {
		t.Fatalf("joiner NeedSnapshot %q, status %+v; want a snapshot from a", j.Need, c.status("j"))
	}
	if seq := c.Restore("j", "a"); seq != 5 {
		t.Fatalf("snapshot at %d, want 5", seq)
	}
	c.Run()
	c.Node("j").Manual = true
	c.Propose("a", "e6")
	c.Propose("a", "e7")
	c.Run()
	if a := c.Node("a"); a.Commit != 7 {
		t.Fatalf("commit %d with the joiner behind, want 7: a joiner does not count", a.Commit)
	}
	if st := c.status("a"); st.Pending != 2 || !st.Peers[1].Joining || st.Peers[1].Lag != 2 {
		t.Fatalf("primary %+v: want e6, e7 kept for the joiner", st)
	}
	c.ApplyAll(c.Node("j"))
	c.Run()
	c.WantApplied("j", seqs(1, 7)...)
	if st := c.status("j"); !st.CaughtUp || st.Role != pb.RoleJoining || st.Complete {
		t.Fatalf("joiner %+v", st)
	}
	c.Config(cfg(3, "", "a", "b", "j"), "j")
	if st := c.status("j"); st.Role != pb.RoleBackup || st.Complete {
		t.Fatalf("promoted joiner before hearing from the primary: %+v", st)
	}
	c.Config(cfg(3, "", "a", "b", "j"), "a", "b")
	c.Run()
	if st := c.status("j"); !st.Complete {
		t.Fatalf("promoted joiner after hearing from the primary: %+v", st)
	}
	c.Propose("a", "e8")
	c.Run()
	if a := c.Node("a"); a.Commit != 7 {
		t.Fatalf("commit %d with backup j behind, want 7", a.Commit)
	}
	c.ApplyAll(c.Node("j"))
	c.Run()
	if a := c.Node("a"); a.Commit != 8 {
		t.Fatalf("commit %d, want 8", a.Commit)
	}
}

// TestJoinerNeverPrimary: a joiner made primary directly is not complete
// and refuses proposals.
func TestJoinerNeverPrimary(t *testing.T) {
	c := newCluster(t, small, "a", "j")
	c.Config(cfg(1, "j", "a"))
	c.Run()
	c.Propose("a", "e1")
	c.Run()
	c.Crash("a")
	c.Config(cfg(2, "", "j"))
	if _, err := c.TryPropose("j", "f2"); !errors.Is(err, pb.ErrNotPrimary) {
		t.Fatalf("Propose at a promoted joiner: %v, want ErrNotPrimary", err)
	}
	if st := c.status("j"); st.Complete || st.ReadReady {
		t.Fatalf("promoted joiner %+v", st)
	}
}

// TestRestartedBackupBarrier: a group re-formed after a total outage runs
// on the state its members kept (Options.Restarted), and a backup's kept
// state may lag what the primary committed. A backup is therefore not
// complete (it may not take over) until the primary's first entries of
// the configuration have told it how far to go and it has applied that
// far; being told to fetch a snapshot does not count. The primary, with
// no one upstream, is complete at once. Without Restarted, a backup of
// the first configuration is complete at once.
func TestRestartedBackupBarrier(t *testing.T) {
	o := small
	o.Restarted = true
	c := newCluster(t, o)
	c.Add("a", 3)
	c.Add("b", 3)
	c.Config(cfg(1, "", "a", "b"))
	if st := c.status("a"); st.Role != pb.RolePrimary || !st.Complete || !st.ReadReady {
		t.Fatalf("restarted primary %+v: want complete at once", st)
	}
	if st := c.status("b"); st.Role != pb.RoleBackup || st.Complete {
		t.Fatalf("restarted backup before a spoke: %+v, want incomplete", st)
	}
	c.Run() // a kept log of unknown lineage: b is told to fetch a snapshot
	if st := c.status("b"); c.Node("b").Need != "a" || st.Complete {
		t.Fatalf("restarted backup told to fetch a snapshot: need %q, %+v; want a snapshot from a, incomplete", c.Node("b").Need, st)
	}
	c.Restore("b", "a")
	c.Node("b").Manual = true
	c.Propose("a", "e4")
	c.Run() // a accepts b's Hello and sends e4, reporting 4: b's barrier
	if st := c.status("b"); st.Complete || st.Applied != 3 {
		t.Fatalf("restarted backup told 4, applied 3: %+v, want incomplete", st)
	}
	c.ApplyAll(c.Node("b"))
	c.Run()
	if st := c.status("b"); !st.Complete || st.Applied != 4 || c.Node("a").Commit != 4 {
		t.Fatalf("restarted backup at its barrier: %+v, primary commit %d; want complete, commit 4", st, c.Node("a").Commit)
	}

	c = newCluster(t, small)
	c.Add("a", 3)
	c.Add("b", 3)
	c.Config(cfg(1, "", "a", "b"))
	if st := c.status("b"); !st.Complete {
		t.Fatalf("backup of a first configuration, not restarted: %+v, want complete at once", st)
	}
}

// TestStaleSnapshotRefused: a snapshot is accepted only from the primary
// that asked for it, in the configuration in which it asked.
func TestStaleSnapshotRefused(t *testing.T) {
	c := newCluster(t, small, "a", "b", "j")
	c.Config(cfg(1, "", "a", "b"), "a", "b")
	c.Run()
	c.Propose("a", "e1")
	c.Run()
	c.Config(cfg(2, "j", "a", "b"))
	c.Run()
	j := c.Node("j").Core
	if j.AcceptsSnapshot("b", 1) || !j.AcceptsSnapshot("a", 1) {
		t.Fatal("the joiner accepts a snapshot from a backup, or not from the primary")
	}
	c.Config(cfg(3, "j", "b"), "j")
	if j.AcceptsSnapshot("a", 1) {
		t.Fatal("the joiner accepts a snapshot of the old primary in a new configuration")
	}
	j.Restored("a", 1)
	if st := j.Detail(); st.Applied != 0 || st.Lineage != 0 {
		t.Fatalf("a refused snapshot was installed: %+v", st)
	}
}

// TestDemotedPrimary: an old primary that a configuration makes a backup
// (instead of removing it) is fenced like any backup: its entries the new
// primary never had are replaced by a snapshot, and it no longer commits.
func TestDemotedPrimary(t *testing.T) {
	c := newCluster(t, small, "a", "b")
	c.Config(cfg(1, "", "a", "b"))
	c.Run()
	c.Propose("a", "e1")
	c.Run()
	c.Drop = dropEntriesTo("b", 1)
	c.Propose("a", "x2")
	c.Run()
	c.Drop = nil
	c.Config(cfg(2, "", "b", "a"))
	c.Run()
	if n := c.Node("a"); n.Need != "b" || c.status("a").Role != pb.RoleBackup {
		t.Fatalf("demoted a: NeedSnapshot %q, status %+v", n.Need, c.status("a"))
	}
	c.Restore("a", "b")
	c.Propose("b", "f2")
	c.Run()
	c.WantApplied("a", "e1", "f2")
	if b, a := c.Node("b"), c.Node("a"); b.Commit != 2 || a.Commit != 1 {
		t.Fatalf("commit at b %d, at a %d; want 2 and still 1", b.Commit, a.Commit)
	}
}
