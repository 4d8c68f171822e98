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
	if _, err := c.tryPropose("a", "x"); !errors.Is(err, pb.ErrNotPrimary) {
		t.Fatalf("Propose before any configuration: %v, want ErrNotPrimary", err)
	}
	c.config(cfg(1, "", "a"))
	for _, d := range seqs(1, 3) {
		c.propose("a", d)
	}
	st := c.status("a")
	if st.Role != pb.RolePrimary || st.Commit != 3 || c.node("a").commit != 3 || !st.ReadReady || !st.Complete {
		t.Fatalf("status %+v, Ready.Commit %d", st, c.node("a").commit)
	}
	if st.Pending != 0 || len(c.queue) != 0 || len(st.Peers) != 0 {
		t.Fatalf("a primary without backups keeps %d entries and sends %d messages", st.Pending, len(c.queue))
	}
}

// TestLoggingChannelFansOut checks that the primary sends every entry to
// each backup directly and that each backup acks to the primary.
func TestLoggingChannelFansOut(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.config(cfg(1, "", "a", "b", "c"))
	c.run()
	for _, d := range seqs(1, 5) {
		c.propose("a", d)
	}
	to := map[string]int{}
	for _, m := range c.queue {
		if m.Type != pb.MsgEntries || m.From != "a" {
			t.Fatalf("unexpected %s %s->%s after proposals", m.Type, m.From, m.To)
		}
		to[m.To] += len(m.Entries)
	}
	if to["b"] != 5 || to["c"] != 5 {
		t.Fatalf("entries sent per backup: %v, want 5 each", to)
	}
	for {
		m, err, ok := c.deliver()
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
		c.wantApplied(n, seqs(1, 5)...)
	}
	if a := c.node("a"); a.commit != 5 || c.status("a").Pending != 0 {
		t.Fatalf("primary commit %d, pending %d; want 5, 0", a.commit, c.status("a").Pending)
	}
	if b := c.node("b"); b.commit != 0 || c.status("b").ReadReady {
		t.Fatalf("a backup reported Commit %d or serves reads", b.commit)
	}
}

// TestOutputRule checks that the commit point waits for the slowest
// backup while the primary keeps taking proposals.
func TestOutputRule(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.node("c").manual = true
	c.config(cfg(1, "", "a", "b", "c"))
	c.run()
	for _, d := range seqs(1, 4) {
		c.propose("a", d)
		c.run()
	}
	c.wantApplied("b", seqs(1, 4)...)
	if a := c.node("a"); a.commit != 0 {
		t.Fatalf("commit %d before c applied anything", a.commit)
	}
	c.applyN(c.node("c"), 3)
	c.run()
	if a := c.node("a"); a.commit != 3 {
		t.Fatalf("commit %d after c applied 3, want 3", a.commit)
	}
	st := c.status("a")
	lag := map[string]uint64{}
	for _, p := range st.Peers {
		lag[p.ID] = p.Lag
	}
	if lag["b"] != 0 || lag["c"] != 1 || st.Pending != 1 {
		t.Fatalf("peers %+v, pending %d: want c one behind, b none", st.Peers, st.Pending)
	}
	c.applyAll(c.node("c"))
	c.run()
	if a := c.node("a"); a.commit != 4 {
		t.Fatalf("commit %d after every backup applied everything, want 4", a.commit)
	}
}

// TestSlowBackupWindowFull checks VM-FT's throttling: a backup that does
// not acknowledge holds the primary to Window entries.
func TestSlowBackupWindowFull(t *testing.T) {
	o := small
	o.Window = 3
	c := newCluster(t, o, "a", "b", "c")
	c.node("c").manual = true
	c.config(cfg(1, "", "a", "b", "c"))
	c.run()
	for _, d := range seqs(1, 3) {
		c.propose("a", d)
	}
	c.run()
	if _, err := c.tryPropose("a", "e4"); !errors.Is(err, pb.ErrWindowFull) {
		t.Fatalf("fourth proposal with c silent: %v, want ErrWindowFull", err)
	}
	if st := c.status("a"); st.Peers[1].Lag != 3 || st.Peers[0].Lag != 0 {
		t.Fatalf("peer lags %+v, want b 0 and c 3", st.Peers)
	}
	c.applyN(c.node("c"), 1)
	c.run()
	if seq := c.propose("a", "e4"); seq != 4 {
		t.Fatalf("seq %d after c caught up by one, want 4", seq)
	}
}

func TestNotPrimary(t *testing.T) {
	c := newCluster(t, small, "a", "b", "x")
	c.config(cfg(1, "", "a", "b"))
	c.run()
	for _, n := range []string{"b", "x"} {
		if _, err := c.tryPropose(n, "e1"); !errors.Is(err, pb.ErrNotPrimary) {
			t.Fatalf("Propose at %s: %v, want ErrNotPrimary", n, err)
		}
	}
	if st := c.status("x"); st.Role != pb.RoleNone || st.Complete || st.ReadReady {
		t.Fatalf("a replica outside the configuration: %+v", st)
	}
	err := c.node("b").core.Step(pb.Message{Type: pb.MsgHello, From: "x", To: "b", Epoch: 1})
	if !errors.Is(err, pb.ErrUnexpectedMessage) {
		t.Fatalf("Hello to a backup: %v, want ErrUnexpectedMessage", err)
	}
	err = c.node("a").core.Step(pb.Message{Type: pb.MsgEntries, From: "b", To: "a", Epoch: 1})
	if !errors.Is(err, pb.ErrUnexpectedMessage) {
		t.Fatalf("entries to the primary: %v, want ErrUnexpectedMessage", err)
	}
	err = c.node("a").core.Step(pb.Message{Type: pb.MsgHello, From: "x", To: "a", Epoch: 1})
	if !errors.Is(err, pb.ErrUnexpectedMessage) {
		t.Fatalf("Hello from a stranger: %v, want ErrUnexpectedMessage", err)
	}
}

// TestEpochFencing checks that messages of another epoch are refused both
// ways: an old primary's entries at a backup that moved on, and a new
// primary's entries at a backup that has not.
func TestEpochFencing(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.config(cfg(1, "", "a", "b", "c"))
	c.run()
	c.propose("a", "e1")
	old := slices.Clone(c.queue)
	c.run()
	c.config(cfg(2, "", "b", "c"), "b")
	for _, m := range old {
		if err := c.node("b").core.Step(m); !errors.Is(err, pb.ErrStaleEpoch) {
			t.Fatalf("epoch-1 %s at b in epoch 2: %v, want ErrStaleEpoch", m.Type, err)
		}
	}
	next := pb.Message{Type: pb.MsgEntries, From: "b", To: "c", Epoch: 2, Seq: 2, Lineage: 2,
		Entries: []pb.Entry{{Seq: 2, Data: []byte("f2")}}}
	if err := c.node("c").core.Step(next); !errors.Is(err, pb.ErrStaleEpoch) {
		t.Fatalf("epoch-2 entries at c in epoch 1: %v, want ErrStaleEpoch", err)
	}
	c.wantApplied("c", "e1")
	if _, err := c.tryPropose("a", "e2"); err != nil {
		t.Fatalf("a, still in epoch 1, refuses a proposal: %v", err)
	}
	c.run()
	if a := c.node("a"); a.commit != 1 {
		t.Fatalf("the old primary committed %d without b's ack, want 1", a.commit)
	}
	c.wantApplied("c", "e1", "e2")
	// c applied e2, which the new primary never had: it must not keep it.
	c.config(cfg(2, "", "b", "c"), "c")
	c.run()
	if n := c.node("c"); n.need != "b" || c.status("c").Synced {
		t.Fatalf("c ahead of the new primary: NeedSnapshot %q, status %+v", n.need, c.status("c"))
	}
	c.restore("c", "b")
	c.run()
	c.wantApplied("c", "e1")
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
