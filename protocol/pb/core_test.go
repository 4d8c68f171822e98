package pb_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/lockstep/lockstep/protocol/pb"
)

var small = pb.Options{Window: 8, MaxBatch: 2, ResendTicks: 3, HelloTicks: 3}

func TestPrimaryAlone(t *testing.T) {
	c := newCluster(t, small, "a")
	if _, err := c.TryPropose("a", "x"); !errors.Is(err, pb.ErrNotPrimary) {
		t.Fatalf("Propose before any configuration: %v, want ErrNotPrimary", err)
	}
	c.Config(cfg(1, "", "a"))
	for _, d := range seqs(1, 3) {
		c.Propose("a", d)
	}
	st := c.status("a")
	if st.Role != pb.RolePrimary || st.Commit != 3 || c.Node("a").Commit != 3 || !st.ReadReady || !st.Complete {
		t.Fatalf("status %+v, Ready.Commit %d", st, c.Node("a").Commit)
	}
	if st.Pending != 0 || len(c.Queue) != 0 || len(st.Peers) != 0 {
		t.Fatalf("a primary without backups keeps %d entries and sends %d messages", st.Pending, len(c.Queue))
	}
}

// TestLoggingChannelFansOut checks that the primary sends every entry to
// each backup directly and that each backup acks to the primary.
func TestLoggingChannelFansOut(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.Config(cfg(1, "", "a", "b", "c"))
	c.Run()
	for _, d := range seqs(1, 5) {
		c.Propose("a", d)
	}
	to := map[string]int{}
	for _, m := range c.Queue {
		if m.Type != pb.MsgEntries || m.From != "a" {
			t.Fatalf("unexpected %s %s->%s after proposals", m.Type, m.From, m.To)
		}
		to[m.To] += len(m.Entries)
	}
	if to["b"] != 5 || to["c"] != 5 {
		t.Fatalf("entries sent per backup: %v, want 5 each", to)
	}
	for {
		m, ok, err := c.Deliver()
		if !ok {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.Type == pb.MsgAck && m.To != "a" {
			t.Fatalf("%s acked to %s, not to the primary", m.From, m.To)
		}
	}
	for _, n := range []string{"a", "b", "c"} {
		c.WantApplied(n, seqs(1, 5)...)
	}
	if a := c.Node("a"); a.Commit != 5 || c.status("a").Pending != 0 {
		t.Fatalf("primary commit %d, pending %d; want 5, 0", a.Commit, c.status("a").Pending)
	}
	if b := c.Node("b"); b.Commit != 0 || c.status("b").ReadReady {
		t.Fatalf("a backup reported Commit %d or serves reads", b.Commit)
	}
}

// TestOutputRule checks that the commit point waits for the slowest
// backup while the primary keeps taking proposals.
func TestOutputRule(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.Node("c").Manual = true
	c.Config(cfg(1, "", "a", "b", "c"))
	c.Run()
	for _, d := range seqs(1, 4) {
		c.Propose("a", d)
		c.Run()
	}
	c.WantApplied("b", seqs(1, 4)...)
	if a := c.Node("a"); a.Commit != 0 {
		t.Fatalf("commit %d before c applied anything", a.Commit)
	}
	c.ApplyN(c.Node("c"), 3)
	c.Run()
	if a := c.Node("a"); a.Commit != 3 {
		t.Fatalf("commit %d after c applied 3, want 3", a.Commit)
	}
	st := c.status("a")
	lag := map[string]uint64{}
	for _, p := range st.Peers {
		lag[p.ID] = p.Lag
	}
	if lag["b"] != 0 || lag["c"] != 1 || st.Pending != 1 {
		t.Fatalf("peers %+v, pending %d: want c one behind, b none", st.Peers, st.Pending)
	}
	c.ApplyAll(c.Node("c"))
	c.Run()
	if a := c.Node("a"); a.Commit != 4 {
		t.Fatalf("commit %d after every backup applied everything, want 4", a.Commit)
	}
}

// TestSlowBackupWindowFull checks VM-FT's throttling: a backup that does
// not acknowledge holds the primary to Window entries.
func TestSlowBackupWindowFull(t *testing.T) {
	o := small
	o.Window = 3
	c := newCluster(t, o, "a", "b", "c")
	c.Node("c").Manual = true
	c.Config(cfg(1, "", "a", "b", "c"))
	c.Run()
	for _, d := range seqs(1, 3) {
		c.Propose("a", d)
	}
	c.Run()
	if _, err := c.TryPropose("a", "e4"); !errors.Is(err, pb.ErrWindowFull) {
		t.Fatalf("fourth proposal with c silent: %v, want ErrWindowFull", err)
	}
	if st := c.status("a"); st.Peers[1].Lag != 3 || st.Peers[0].Lag != 0 {
		t.Fatalf("peer lags %+v, want b 0 and c 3", st.Peers)
	}
	c.ApplyN(c.Node("c"), 1)
	c.Run()
	if seq := c.Propose("a", "e4"); seq != 4 {
		t.Fatalf("seq %d after c caught up by one, want 4", seq)
	}
}

func TestNotPrimary(t *testing.T) {
	c := newCluster(t, small, "a", "b", "x")
	c.Config(cfg(1, "", "a", "b"))
	c.Run()
	for _, n := range []string{"b", "x"} {
		if _, err := c.TryPropose(n, "e1"); !errors.Is(err, pb.ErrNotPrimary) {
			t.Fatalf("Propose at %s: %v, want ErrNotPrimary", n, err)
		}
	}
	if st := c.status("x"); st.Role != pb.RoleNone || st.Complete || st.ReadReady {
		t.Fatalf("a replica outside the configuration: %+v", st)
	}
	err := c.Node("b").Core.StepMessage(pb.Message{Type: pb.MsgHello, From: "x", To: "b", Epoch: 1})
	if !errors.Is(err, pb.ErrUnexpectedMessage) {
		t.Fatalf("Hello to a backup: %v, want ErrUnexpectedMessage", err)
	}
	err = c.Node("a").Core.StepMessage(pb.Message{Type: pb.MsgEntries, From: "b", To: "a", Epoch: 1})
	if !errors.Is(err, pb.ErrUnexpectedMessage) {
		t.Fatalf("entries to the primary: %v, want ErrUnexpectedMessage", err)
	}
	err = c.Node("a").Core.StepMessage(pb.Message{Type: pb.MsgHello, From: "x", To: "a", Epoch: 1})
	if !errors.Is(err, pb.ErrUnexpectedMessage) {
		t.Fatalf("Hello from a stranger: %v, want ErrUnexpectedMessage", err)
	}
}

// TestEpochFencing checks that messages of another epoch are refused both
// ways: an old primary's entries at a backup that moved on, and a new
// primary's entries at a backup that has not.
func TestEpochFencing(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.Config(cfg(1, "", "a", "b", "c"))
	c.Run()
	c.Propose("a", "e1")
	old := slices.Clone(c.Queue)
	c.Run()
	c.Config(cfg(2, "", "b", "c"), "b")
	for _, m := range old {
		if err := c.Node("b").Core.StepMessage(m); !errors.Is(err, pb.ErrStaleEpoch) {
			t.Fatalf("epoch-1 %s at b in epoch 2: %v, want ErrStaleEpoch", m.Type, err)
		}
	}
	next := pb.Message{Type: pb.MsgEntries, From: "b", To: "c", Epoch: 2, Seq: 2, Lineage: 2,
		Entries: []pb.Entry{{Seq: 2, Data: []byte("f2")}}}
	if err := c.Node("c").Core.StepMessage(next); !errors.Is(err, pb.ErrStaleEpoch) {
		t.Fatalf("epoch-2 entries at c in epoch 1: %v, want ErrStaleEpoch", err)
	}
	c.WantApplied("c", "e1")
	if _, err := c.TryPropose("a", "e2"); err != nil {
		t.Fatalf("a, still in epoch 1, refuses a proposal: %v", err)
	}
	c.Run()
	if a := c.Node("a"); a.Commit != 1 {
		t.Fatalf("the old primary committed %d without b's ack, want 1", a.Commit)
	}
	c.WantApplied("c", "e1", "e2")
	// c applied e2, which the new primary never had: it must not keep it.
	c.Config(cfg(2, "", "b", "c"), "c")
	c.Run()
	if n := c.Node("c"); n.Need != "b" || c.status("c").Synced {
		t.Fatalf("c ahead of the new primary: NeedSnapshot %q, status %+v", n.Need, c.status("c"))
	}
	c.Restore("c", "b")
	c.Run()
	c.WantApplied("c", "e1")
	if st := c.status("c"); !st.Synced || st.Lineage != 2 || !st.Complete {
		t.Fatalf("c after the snapshot of b: %+v", st)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, bad := range []pb.Config{
		{},
		{Epoch: 1},
		{Epoch: 1, Members: []string{"a", "a"}},
		{Epoch: 1, Members: []string{"a", ""}},
		{Epoch: 1, Members: []string{"a"}, Joining: "a"},
	} {
		if err := bad.Validate(); !errors.Is(err, pb.ErrInvalidConfig) {
			t.Errorf("%+v: %v, want ErrInvalidConfig", bad, err)
		}
	}
	if err := cfg(3, "j", "a", "b").Validate(); err != nil {
		t.Fatal(err)
	}
	for r, want := range map[pb.Role]string{pb.RolePrimary: "primary", pb.RoleBackup: "backup", pb.RoleJoining: "joining", pb.RoleNone: "none", 9: "unknown"} {
		if r.String() != want {
			t.Errorf("role %d is %q, want %q", r, r, want)
		}
	}
}

// TestProposeAheadOfApplied: the runtime reports the primary's own
// proposals Applied in batches, so a primary proposes again before the
// last one is reported; only entries received before it took office must
// be applied first.
func TestProposeAheadOfApplied(t *testing.T) {
	c := pb.New(pb.Options{ID: "a"}, 0)
	c.SetConfig(pb.Config{Epoch: 1, Members: []string{"a", "b"}})
	for want := uint64(1); want <= 3; want++ {
		seq, err := c.Propose([]byte("x"))
		if err != nil || seq != want {
			t.Fatalf("proposal %d before any Applied: seq %d, %v", want, seq, err)
		}
	}
	c.Applied(3)
	if st := c.Status(); st.Applied != 3 || st.Last != 3 {
		t.Fatalf("status after Applied(3): %+v", st)
	}
}
