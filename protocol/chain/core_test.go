package chain_test

import (
	"errors"
	"testing"

	"github.com/lockstep/lockstep/protocol/chain"
)

var small = chain.Options{Window: 8, MaxBatch: 2, ResendTicks: 3, HelloTicks: 3}

func TestSingleMember(t *testing.T) {
	c := newCluster(t, small, "a")
	if _, err := c.TryPropose("a", "x"); !errors.Is(err, chain.ErrNotHead) {
		t.Fatalf("Propose before any configuration: %v, want ErrNotHead", err)
	}
	c.Config(cfg(1, "", "a"))
	for _, d := range seqs(1, 3) {
		c.Propose("a", d)
	}
	st := c.status("a")
	if st.Role != chain.RoleSingle || st.Commit != 3 || c.Node("a").Commit != 3 || !st.ReadReady || !st.Complete {
		t.Fatalf("status %+v, Ready.Commit %d", st, c.Node("a").Commit)
	}
	if st.Pending != 0 || len(c.Queue) != 0 {
		t.Fatalf("a single member keeps %d entries and sends %d messages", st.Pending, len(c.Queue))
	}
}

func TestChainReplicatesAndCommits(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.Config(cfg(1, "", "a", "b", "c"))
	c.Run()
	for _, d := range seqs(1, 5) {
		c.Propose("a", d)
	}
	c.Run()
	for _, n := range []string{"a", "b", "c"} {
		c.WantApplied(n, seqs(1, 5)...)
	}
	if a := c.Node("a"); a.Commit != 5 || c.status("a").Pending != 0 {
		t.Fatalf("head commit %d, pending %d; want 5, 0", a.Commit, c.status("a").Pending)
	}
	if b := c.Node("b"); b.Commit != 0 {
		t.Fatalf("a middle reported Commit %d", b.Commit)
	}
	if !c.status("c").ReadReady || c.status("b").ReadReady || c.status("a").ReadReady {
		t.Fatal("only the tail may serve reads")
	}
}

// TestForwardOnlyAfterApplied checks that an entry goes downstream only
// once the runtime applied it, so a successor's history is always a prefix
// of its predecessor's.
func TestForwardOnlyAfterApplied(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.Node("b").Manual = true
	c.Config(cfg(1, "", "a", "b", "c"))
	c.Run()
	c.Propose("a", "e1")
	c.Propose("a", "e2")
	c.Run()
	if len(c.Node("b").Pending) != 2 || len(c.Node("c").Applied) != 0 {
		t.Fatalf("b has %d pending, c applied %d: entries passed b before it applied them", len(c.Node("b").Pending), len(c.Node("c").Applied))
	}
	c.ApplyN(c.Node("b"), 1)
	c.Run()
	c.WantApplied("c", "e1")
	if a := c.Node("a"); a.Commit != 1 {
		t.Fatalf("head commit %d, want 1", a.Commit)
	}
}

func TestWindowFull(t *testing.T) {
	o := small
	o.Window = 3
	c := newCluster(t, o, "a", "b")
	c.Config(cfg(1, "", "a", "b"))
	c.Run()
	for _, d := range seqs(1, 3) {
		c.Propose("a", d)
	}
	if _, err := c.TryPropose("a", "e4"); !errors.Is(err, chain.ErrWindowFull) {
		t.Fatalf("fourth Propose in a window of 3: %v, want ErrWindowFull", err)
	}
	c.Run()
	if _, err := c.TryPropose("a", "e4"); err != nil {
		t.Fatalf("Propose after the acks: %v", err)
	}
}

func TestNotHead(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c", "x")
	c.Config(cfg(1, "", "a", "b", "c"))
	for _, n := range []string{"b", "c", "x"} {
		if _, err := c.TryPropose(n, "d"); !errors.Is(err, chain.ErrNotHead) {
			t.Errorf("Propose at %s: %v, want ErrNotHead", n, err)
		}
	}
	c.Queue = nil
	c.Tick("x", 20)
	if st := c.status("x"); st.Role != chain.RoleNone || len(c.Queue) != 0 {
		t.Fatalf("a replica outside the configuration is %s and sent %d messages", st.Role, len(c.Queue))
	}
}

// TestEpochFencing checks that messages of another epoch, from a replica
// that is not the right neighbour, or for another replica are refused and
// change nothing.
func TestEpochFencing(t *testing.T) {
	c := newCluster(t, small, "a", "b", "c")
	c.Config(cfg(1, "", "a", "b", "c"))
	c.Run()
	c.Propose("a", "e1")
	c.Run()
	c.Config(cfg(2, "", "a", "c"))
	c.Run()
	before := c.status("c")
	for _, tc := range []struct {
		m    chain.Message
		want error
	}{
		{chain.Message{Type: chain.MsgEntries, From: "b", To: "c", Epoch: 1, Seq: 9, Entries: []chain.Entry{{Seq: 2, Data: []byte("old")}}}, chain.ErrStaleEpoch},
		{chain.Message{Type: chain.MsgEntries, From: "a", To: "c", Epoch: 3, Seq: 9}, chain.ErrStaleEpoch},
		{chain.Message{Type: chain.MsgEntries, From: "b", To: "c", Epoch: 2, Seq: 9, Entries: []chain.Entry{{Seq: 2, Data: []byte("old")}}}, chain.ErrUnexpectedMessage},
		{chain.Message{Type: chain.MsgAck, From: "a", To: "c", Epoch: 2, Seq: 1}, chain.ErrUnexpectedMessage},
		{chain.Message{Type: chain.MsgHello, From: "a", To: "b", Epoch: 2}, chain.ErrUnexpectedMessage},
		{chain.Message{Type: 99, From: "a", To: "c", Epoch: 2}, chain.ErrUnexpectedMessage},
	} {
		if err := c.Node("c").Core.StepMessage(tc.m); !errors.Is(err, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.m, err, tc.want)
		}
	}
	if after := c.status("c"); after != before || c.Node("c").Core.HasReady() {
		t.Fatalf("refused messages changed the replica: %+v -> %+v", before, after)
	}
	c.Node("a").Core.SetConfig(cfg(1, "", "a", "b", "c"))
	if st := c.status("a"); st.Epoch != 2 || st.Successor != "c" {
		t.Fatalf("an older configuration was installed: %+v", st)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, bad := range []chain.Config{
		{Epoch: 0, Members: []string{"a"}},
		{Epoch: 1},
		{Epoch: 1, Members: []string{"a", "a"}},
		{Epoch: 1, Members: []string{"a", ""}},
		{Epoch: 1, Members: []string{"a"}, Joining: "a"},
	} {
		if err := bad.Validate(); !errors.Is(err, chain.ErrInvalidConfig) {
			t.Errorf("%+v: %v, want ErrInvalidConfig", bad, err)
		}
	}
	if err := cfg(1, "j", "a", "b").Validate(); err != nil {
		t.Errorf("valid configuration: %v", err)
	}
	c := newCluster(t, small, "a")
	c.Config(chain.Config{Epoch: 1, Members: []string{"a", "a"}})
	if st := c.status("a"); st.Epoch != 0 {
		t.Fatalf("an invalid configuration was installed: %+v", st)
	}
}
