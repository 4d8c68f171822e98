package checkpoint_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/lockstep/lockstep/protocol/checkpoint"
)

var tiny = checkpoint.Options{Window: 3, MaxChunk: 4, ResendTicks: 2, HelloTicks: 2}

// group is a hand-driven set of cores: messages wait in one queue until
// a test delivers or drops them, and each runtime installs what it is
// given only when the test says so (or at once, if eager).
type group struct {
	t       *testing.T
	cores   map[string]*checkpoint.Core
	eager   map[string]bool
	queue   []checkpoint.Message
	pending map[string][]checkpoint.Checkpoint // handed out, not installed
	state   map[string][]checkpoint.Checkpoint // installed, in order
	commit  map[string]uint64
	snap    map[string]string // NeedSnapshot
}

func newGroup(t *testing.T, opts checkpoint.Options, names ...string) *group {
	g := &group{t: t, cores: map[string]*checkpoint.Core{}, eager: map[string]bool{},
		pending: map[string][]checkpoint.Checkpoint{}, state: map[string][]checkpoint.Checkpoint{},
		commit: map[string]uint64{}, snap: map[string]string{}}
	for _, n := range names {
		o := opts
		o.ID = n
		g.cores[n] = checkpoint.New(o, 0)
		g.eager[n] = true
	}
	return g
}

// collect plays n's runtime for one Ready.
func (g *group) collect(n string) {
	rd := g.cores[n].TypedReady()
	g.queue = append(g.queue, rd.Messages...)
	g.pending[n] = append(g.pending[n], rd.Install...)
	if rd.Commit != 0 {
		if rd.Commit < g.commit[n] {
			g.t.Fatalf("%s: Commit went from %d to %d", n, g.commit[n], rd.Commit)
		}
		g.commit[n] = rd.Commit
	}
	if rd.NeedSnapshot != "" {
		g.snap[n] = rd.NeedSnapshot
	}
	if g.eager[n] {
		g.install(n)
	}
}

// install applies every pending checkpoint of n.
func (g *group) install(n string) {
	p := g.pending[n]
	if len(p) == 0 {
		return
	}
	g.state[n] = append(g.state[n], p...)
	g.pending[n] = nil
	g.cores[n].Applied(p[len(p)-1].Seq)
	g.collect(n)
}

func (g *group) config(epoch uint64, joining string, members ...string) {
	for n, c := range g.cores {
		c.SetConfig(checkpoint.Config{Epoch: epoch, Members: members, Joining: joining})
		g.collect(n)
	}
}

// deliver steps the first queued message, failing the test on an error.
func (g *group) deliver() checkpoint.Message {
	m := g.queue[0]
	g.queue = g.queue[1:]
	if err := g.cores[m.To].StepMessage(m); err != nil {
		g.t.Fatalf("%s %s->%s: %v", m.Type, m.From, m.To, err)
	}
	g.collect(m.To)
	return m
}

func (g *group) run() {
	for len(g.queue) > 0 {
		g.deliver()
	}
}

// drop removes the queued messages that match.
func (g *group) drop(match func(checkpoint.Message) bool) int {
	n := len(g.queue)
	g.queue = slices.DeleteFunc(g.queue, match)
	return n - len(g.queue)
}

func (g *group) checkpoint(n string, seq uint64, data string) {
	g.t.Helper()
	if err := g.cores[n].Checkpoint(seq, []byte(data)); err != nil {
		g.t.Fatalf("%s: Checkpoint(%d): %v", n, seq, err)
	}
	g.collect(n)
}

func (g *group) tick(n string, times int) {
	for range times {
		g.cores[n].Tick()
		g.collect(n)
	}
}

func (g *group) status(n string) checkpoint.Status { return g.cores[n].Detail() }

// wantState checks what n installed, as seq:data pairs.
func (g *group) wantState(n string, want ...checkpoint.Checkpoint) {
	g.t.Helper()
	got := g.state[n]
	if !slices.EqualFunc(got, want, func(a, b checkpoint.Checkpoint) bool { return a.Seq == b.Seq && bytes.Equal(a.Data, b.Data) }) {
		g.t.Fatalf("%s installed %v, want %v", n, got, want)
	}
}

func ck(seq uint64, data string) checkpoint.Checkpoint {
	return checkpoint.Checkpoint{Seq: seq, Data: []byte(data)}
}

func TestPrimaryAlone(t *testing.T) {
	g := newGroup(t, tiny, "a")
	if err := g.cores["a"].Checkpoint(5, []byte("x")); !errors.Is(err, checkpoint.ErrNotPrimary) {
		t.Fatalf("Checkpoint before any configuration: %v, want ErrNotPrimary", err)
	}
	g.config(1, "", "a")
	g.checkpoint("a", 5, "x=1")
	g.checkpoint("a", 9, "y=2")
	if err := g.cores["a"].Checkpoint(9, []byte("again")); !errors.Is(err, checkpoint.ErrCheckpointOrder) {
		t.Fatalf("a repeated seq: %v, want ErrCheckpointOrder", err)
	}
	st := g.status("a")
	if g.commit["a"] != 9 || st.Commit != 9 || st.Applied != 9 || !st.ReadReady || !st.Complete || st.Held != 0 || len(g.queue) != 0 {
		t.Fatalf("a primary alone: commit %d, status %+v, %d messages", g.commit["a"], st, len(g.queue))
	}
}

// TestCommitMarker checks that a backup installs a checkpoint only once
// its last chunk, the commit marker, has arrived, and that the primary
// commits only once every backup acknowledged.
func TestCommitMarker(t *testing.T) {
	g := newGroup(t, tiny, "a", "b", "c")
	g.config(1, "", "a", "b", "c")
	g.run()
	g.checkpoint("a", 7, "0123456789") // three chunks per backup
	if n := len(g.queue); n != 6 {
		t.Fatalf("%d messages for a 10-byte checkpoint to two backups, want 6 chunks", n)
	}
	for range 5 { // every chunk but c's commit marker
		if m := g.deliver(); m.Type != checkpoint.MsgChunk {
			t.Fatalf("delivered %s", m.Type)
		}
	}
	g.wantState("c")
	g.wantState("b", ck(7, "0123456789"))
	if g.commit["a"] != 0 {
		t.Fatalf("commit %d before c installed", g.commit["a"])
	}
	g.run()
	g.wantState("c", ck(7, "0123456789"))
	if g.commit["a"] != 7 || g.status("a").Held != 0 {
		t.Fatalf("commit %d, held %d after both acks", g.commit["a"], g.status("a").Held)
	}
}

// TestOutputRuleAndWindow checks that Commit waits for the slowest
// backup, which throttles the primary once it lags Window checkpoints.
func TestOutputRuleAndWindow(t *testing.T) {
	g := newGroup(t, tiny, "a", "b", "c")
	g.eager["c"] = false
	g.config(1, "", "a", "b", "c")
	g.run()
	for i, s := range []uint64{3, 8, 10} {
		g.checkpoint("a", s, string(rune('p'+i)))
	}
	g.run()
	if err := g.cores["a"].Checkpoint(12, []byte("s")); !errors.Is(err, checkpoint.ErrWindowFull) || g.cores["a"].CanCheckpoint() {
		t.Fatalf("fourth checkpoint with c at 0: %v, want ErrWindowFull", err)
	}
	if st := g.status("a"); g.commit["a"] != 0 || st.Held != 3 || st.Peers[1].Lag != 3 || st.Peers[0].Lag != 0 {
		t.Fatalf("commit %d, status %+v", g.commit["a"], st)
	}
	g.install("c")
	g.run()
	if !g.cores["a"].CanCheckpoint() {
		t.Fatal("the window has room again, but CanCheckpoint says no")
	}
	g.checkpoint("a", 12, "s")
	g.run()
	g.install("c")
	g.run()
	g.wantState("c", ck(3, "p"), ck(8, "q"), ck(10, "r"), ck(12, "s"))
	if g.commit["a"] != 12 || g.status("c").Applied != 12 {
		t.Fatalf("commit %d, c applied %d", g.commit["a"], g.status("c").Applied)
	}
}

// TestJoinerDoesNotCount checks that the joiner neither holds back the
// commit point nor is it complete, and that once caught up and made a
// backup it becomes complete.
func TestJoinerDoesNotCount(t *testing.T) {
	g := newGroup(t, tiny, "a", "j")
	g.eager["j"] = false
	g.config(1, "j", "a")
	g.run()
	g.checkpoint("a", 4, "x")
	g.run()
	if g.commit["a"] != 4 || g.status("j").Complete || g.status("j").CaughtUp {
		t.Fatalf("commit %d, joiner %+v", g.commit["a"], g.status("j"))
	}
	g.install("j")
	g.run()
	if !g.status("j").CaughtUp {
		t.Fatalf("joiner installed everything but is not caught up: %+v", g.status("j"))
	}
	g.config(2, "", "a", "j")
	if g.status("j").Complete {
		t.Fatal("a joiner made backup is complete before the primary's first message")
	}
	g.run()
	if st := g.status("j"); !st.Complete || st.Role != checkpoint.RoleBackup {
		t.Fatalf("backup j after the primary's Accept: %+v", st)
	}
}

// newKeptGroup is newGroup with every core on a state kept at store seq
// applied, as processes restarted on their data directories find it.
func newKeptGroup(t *testing.T, opts checkpoint.Options, applied uint64, names ...string) *group {
	g := newGroup(t, opts, names...)
	for _, n := range names {
		o := opts
		o.ID = n
		g.cores[n] = checkpoint.New(o, applied)
	}
	return g
}

// TestRestartedBackupBarrier: a group re-formed after a total outage runs
// on the state its members kept (Options.Restarted), and a backup's kept
// state may lag what the primary committed. A backup is therefore not
// complete (it may not take over) until the primary's first message of
// the configuration after its snapshot has told it how far to go and it
// has installed that far; being told to fetch a snapshot does not count.
// The primary, with no one upstream, is complete at once. Without
// Restarted, a backup of the first configuration is complete at once.
func TestRestartedBackupBarrier(t *testing.T) {
	o := tiny
	o.Restarted = true
	g := newKeptGroup(t, o, 3, "a", "b")
	g.eager["b"] = false
	g.config(1, "", "a", "b")
	if st := g.status("a"); st.Role != checkpoint.RolePrimary || !st.Complete || !st.ReadReady {
		t.Fatalf("restarted primary %+v: want complete at once", st)
	}
	if st := g.status("b"); st.Role != checkpoint.RoleBackup || st.Complete {
		t.Fatalf("restarted backup before a spoke: %+v, want incomplete", st)
	}
	g.run() // b's kept state is of no known lineage: it is told to fetch a snapshot
	if st := g.status("b"); g.snap["b"] != "a" || st.Complete {
		t.Fatalf("restarted backup told to fetch a snapshot: need %q, %+v; want a snapshot from a, incomplete", g.snap["b"], st)
	}
	g.cores["a"].Hold(3)
	g.cores["b"].Restored("a", 3)
	g.collect("b")
	g.checkpoint("a", 5, "x")
	g.run() // a accepts b's Hello, reporting its head 5 (b's barrier), and sends checkpoint 5
	if st := g.status("b"); st.Complete || st.Applied != 3 {
		t.Fatalf("restarted backup told 5, installed 3: %+v, want incomplete", st)
	}
	g.install("b")
	g.run()
	if st := g.status("b"); !st.Complete || st.Applied != 5 || g.commit["a"] != 5 {
		t.Fatalf("restarted backup at its barrier: %+v, primary commit %d; want complete, commit 5", st, g.commit["a"])
	}

	g = newKeptGroup(t, tiny, 3, "a", "b")
	g.config(1, "", "a", "b")
	if st := g.status("b"); !st.Complete {
		t.Fatalf("backup of a first configuration, not restarted: %+v, want complete at once", st)
	}
}

// TestLostChunk checks that a backup missing a chunk asks again and
// installs the checkpoint whole, and that a lost ack is repaired by the
// primary's go-back-N resend.
func TestLostChunk(t *testing.T) {
	g := newGroup(t, tiny, "a", "b")
	g.config(1, "", "a", "b")
	g.run()
	g.checkpoint("a", 2, "abcdefgh")
	g.checkpoint("a", 6, "ij")
	g.deliver()
	g.drop(func(m checkpoint.Message) bool { return m.Offset == 4 })
	g.run() // b sees a gap at checkpoint 6 and says Hello from 0
	g.wantState("b", ck(2, "abcdefgh"), ck(6, "ij"))
	if g.commit["a"] != 6 {
		t.Fatalf("commit %d after the resend", g.commit["a"])
	}
	g.checkpoint("a", 9, "k")
	g.deliver()
	if n := g.drop(func(m checkpoint.Message) bool { return m.Type == checkpoint.MsgAck }); n != 1 {
		t.Fatalf("dropped %d acks", n)
	}
	g.tick("a", 2)
	g.run()
	g.wantState("b", ck(2, "abcdefgh"), ck(6, "ij"), ck(9, "k"))
	if g.commit["a"] != 9 {
		t.Fatalf("commit %d after the ack was lost and the checkpoint resent", g.commit["a"])
	}
}

// TestLostMiddleChunk: a checkpoint of three chunks whose middle one is
// lost must not be installed from the other two; the backup notices the
// gap in offsets and gets the whole checkpoint again.
func TestLostMiddleChunk(t *testing.T) {
	g := newGroup(t, tiny, "a", "b")
	g.config(1, "", "a", "b")
	g.run()
	g.checkpoint("a", 2, "abcdefghijkl") // chunks at offsets 0, 4 and 8
	if n := g.drop(func(m checkpoint.Message) bool { return m.Type == checkpoint.MsgChunk && m.Offset == 4 }); n != 1 {
		t.Fatalf("dropped %d middle chunks", n)
	}
	g.run()
	g.tick("a", 2)
	g.tick("b", 2)
	g.run()
	g.wantState("b", ck(2, "abcdefghijkl"))
	if g.commit["a"] != 2 {
		t.Fatalf("commit %d after the checkpoint was resent", g.commit["a"])
	}
}

// TestHoldAtZero: a primary that took office with an empty state serves a
// snapshot at seq 0 to a backup whose history diverged. The checkpoints
// it makes while that snapshot is in transfer must be kept for that
// backup even once every other peer has acknowledged them; otherwise the
// backup, restored at 0, is refused and needs a second snapshot. The
// simulator found this (seed 60009 of TestSim).
func TestHoldAtZero(t *testing.T) {
	g := newGroup(t, tiny, "a", "b", "c", "d")
	g.config(1, "", "a", "b", "c", "d")
	g.run()
	g.checkpoint("a", 3, "x")
	g.drop(func(m checkpoint.Message) bool { return m.To != "d" }) // only d gets 3
	g.run()
	delete(g.cores, "a")
	g.config(2, "", "b", "c", "d")
	g.run()
	if g.snap["d"] != "b" {
		t.Fatalf("d, ahead of the new primary, needs a snapshot from %q", g.snap["d"])
	}
	delete(g.snap, "d")
	g.cores["b"].Hold(0) // the runtime serves b's state at 0
	g.checkpoint("b", 2, "y")
	g.run() // c installs and acknowledges 2; d is still fetching
	g.cores["d"].Restored("b", 0)
	g.collect("d")
	g.run()
	if g.snap["d"] != "" {
		t.Fatalf("d, restored at 0, was told to fetch a second snapshot")
	}
	g.wantState("d", ck(3, "x"), ck(2, "y"))
}

// TestFailover checks the new primary's Hello acceptance: a backup at
// its fork continues; a backup that installed a checkpoint the new
// primary never got fetches a snapshot, going back to the new history.
func TestFailover(t *testing.T) {
	g := newGroup(t, tiny, "a", "b", "c")
	g.config(1, "", "a", "b", "c")
	g.run()
	g.checkpoint("a", 5, "x")
	g.run()
	g.checkpoint("a", 8, "y")
	g.drop(func(m checkpoint.Message) bool { return m.To == "b" }) // only c gets 8
	g.run()
	delete(g.cores, "a")
	g.config(2, "", "b", "c")
	g.run()
	if g.snap["c"] != "b" {
		t.Fatalf("c, ahead of the new primary, needs snapshot from %q", g.snap["c"])
	}
	if !g.cores["c"].AcceptsSnapshot("b", 0) || g.cores["c"].AcceptsSnapshot("a", 0) {
		t.Fatal("AcceptsSnapshot")
	}
	g.cores["b"].Hold(5)
	g.cores["c"].Restored("b", 5)
	g.collect("c")
	g.run()
	if st := g.status("c"); st.Applied != 5 || !st.Synced || !st.Complete || st.Lineage != 2 {
		t.Fatalf("c after restoring b's snapshot at 5: %+v", st)
	}
	g.checkpoint("b", 11, "z")
	g.run()
	if g.commit["b"] != 11 || g.status("c").Applied != 11 {
		t.Fatalf("commit %d, c at %d", g.commit["b"], g.status("c").Applied)
	}
}

// TestSnapshotMidEpoch checks that a joiner restoring a snapshot taken
// inside an open epoch continues with the next checkpoint, which the
// primary held for it.
func TestSnapshotMidEpoch(t *testing.T) {
	g := newGroup(t, tiny, "a", "b", "j")
	g.config(1, "", "a", "b")
	g.run()
	g.checkpoint("a", 5, "x")
	g.run() // base moves to 5: an empty joiner needs a snapshot
	g.config(2, "j", "a", "b")
	g.run()
	if g.snap["j"] != "a" {
		t.Fatalf("joiner needs snapshot from %q", g.snap["j"])
	}
	g.cores["a"].Hold(7) // writes 6 and 7 of the open epoch are in the snapshot
	g.collect("a")
	g.checkpoint("a", 9, "y")
	g.run()
	if st := g.status("a"); st.Held != 1 || g.commit["a"] != 9 {
		t.Fatalf("primary holds %d checkpoints, commit %d", st.Held, g.commit["a"])
	}
	g.cores["j"].Restored("a", 7)
	g.collect("j")
	g.run()
	g.wantState("j", ck(9, "y"))
	if st := g.status("j"); !st.CaughtUp || st.Applied != 9 || g.status("a").Held != 0 {
		t.Fatalf("joiner %+v, primary holds %d", st, g.status("a").Held)
	}
}

// TestDemotedPrimary checks that a primary demoted to backup without
// restarting is never trusted: its store may hold unreplicated writes.
func TestDemotedPrimary(t *testing.T) {
	g := newGroup(t, tiny, "a", "b")
	g.config(1, "", "a", "b")
	g.run()
	g.checkpoint("a", 5, "x")
	g.run()
	g.config(2, "", "b", "a")
	g.run()
	if g.snap["a"] != "b" || g.status("a").Lineage != 0 {
		t.Fatalf("demoted primary: needs snapshot from %q, status %+v", g.snap["a"], g.status("a"))
	}
}

func TestStepRejects(t *testing.T) {
	g := newGroup(t, tiny, "a", "b")
	g.config(2, "", "a", "b")
	a := g.cores["a"]
	for _, c := range []struct {
		m    checkpoint.Message
		want error
	}{
		{checkpoint.Message{Type: checkpoint.MsgHello, From: "b", To: "a", Epoch: 1}, checkpoint.ErrStaleEpoch},
		{checkpoint.Message{Type: checkpoint.MsgHello, From: "b", To: "x", Epoch: 2}, checkpoint.ErrUnexpectedMessage},
		{checkpoint.Message{Type: checkpoint.MsgHello, From: "z", To: "a", Epoch: 2}, checkpoint.ErrUnexpectedMessage},
		{checkpoint.Message{Type: checkpoint.MsgAck, From: "b", To: "a", Epoch: 2, Seq: 3}, checkpoint.ErrUnexpectedMessage},
		{checkpoint.Message{Type: checkpoint.MsgChunk, From: "b", To: "a", Epoch: 2}, checkpoint.ErrUnexpectedMessage},
		{checkpoint.Message{Type: 9, From: "b", To: "a", Epoch: 2}, checkpoint.ErrUnexpectedMessage},
	} {
		if err := a.StepMessage(c.m); !errors.Is(err, c.want) {
			t.Errorf("%+v: %v, want %v", c.m, err, c.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []checkpoint.Config{
		{Epoch: 0, Members: []string{"a"}},
		{Epoch: 1},
		{Epoch: 1, Members: []string{"a", ""}},
		{Epoch: 1, Members: []string{"a", "a"}},
		{Epoch: 1, Members: []string{"a"}, Joining: "a"},
	} {
		if err := c.Validate(); !errors.Is(err, checkpoint.ErrInvalidConfig) {
			t.Errorf("%+v: %v", c, err)
		}
	}
	if err := (checkpoint.Config{Epoch: 1, Members: []string{"a", "b"}, Joining: "c"}).Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestSlowInstaller checks that a backup which received a checkpoint but
// is slow to install it gets one resend at most, then only requests for
// its ack, and that a lost ack of the install is repaired.
func TestSlowInstaller(t *testing.T) {
	g := newGroup(t, tiny, "a", "b")
	g.eager["b"] = false
	g.config(1, "", "a", "b")
	g.run()
	g.checkpoint("a", 7, "xyz")
	g.run()
	g.tick("a", 2) // no ack yet: go-back-N
	if len(g.queue) != 1 || g.queue[0].Type != checkpoint.MsgChunk {
		t.Fatalf("after ResendTicks without an ack: %+v", g.queue)
	}
	g.run() // b acks the duplicate: applied 0, received 7
	g.tick("a", 2)
	if len(g.queue) != 1 || g.queue[0].Type != checkpoint.MsgAccept {
		t.Fatalf("a resends to a backup that received everything: %+v", g.queue)
	}
	g.run()
	g.install("b")
	if n := g.drop(func(m checkpoint.Message) bool { return m.Type == checkpoint.MsgAck }); n != 1 {
		t.Fatalf("%d acks of the install", n)
	}
	g.tick("a", 2)
	g.run()
	if g.commit["a"] != 7 {
		t.Fatalf("commit %d after the lost ack was asked for again", g.commit["a"])
	}
}

// TestStaleSnapshotNeeded checks that an answer to a Hello sent before a
// snapshot was restored does not ask for another snapshot, even when the
// snapshot's seq equals the old state's.
func TestStaleSnapshotNeeded(t *testing.T) {
	g := newGroup(t, tiny, "a", "j")
	g.config(3, "j", "a")
	g.queue = nil
	j := g.cores["j"]
	refuse := func(prevLineage uint64) checkpoint.Message {
		return checkpoint.Message{Type: checkpoint.MsgSnapshotNeeded, From: "a", To: "j", Epoch: 3, Seq: 0, Prev: prevLineage, Lineage: 3}
	}
	if err := j.StepMessage(refuse(0)); err != nil || !j.AcceptsSnapshot("a", 0) {
		t.Fatalf("first refusal: %v, accepts %t", err, j.AcceptsSnapshot("a", 0))
	}
	g.collect("j")
	j.Restored("a", 0)
	g.collect("j")
	delete(g.snap, "j")
	if err := j.StepMessage(refuse(0)); err != nil || j.AcceptsSnapshot("a", 0) {
		t.Fatalf("a stale refusal of the Hello from lineage 0 is taken: %v", err)
	}
	g.collect("j")
	if err := j.StepMessage(refuse(3)); err != nil || !j.AcceptsSnapshot("a", 0) {
		t.Fatalf("a refusal of the Hello after the restore is ignored: %v", err)
	}
	g.collect("j")
	if g.snap["j"] != "a" {
		t.Fatalf("NeedSnapshot %q", g.snap["j"])
	}
}
