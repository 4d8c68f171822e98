package pb_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/lockstep/lockstep/protocol/pb"
)

// cluster is a hand-driven group for focused tests: one FIFO queue of
// messages, delivered one at a time or until quiet, with a filter that may
// drop messages, and runtimes that apply at once unless told to hold.
type cluster struct {
	t     *testing.T
	opts  pb.Options
	nodes map[string]*tnode
	queue []pb.Message
	drop  func(pb.Message) bool // drops a message when it returns true
}

// tnode is one replica and the runtime around it.
type tnode struct {
	name    string
	core    *pb.Core
	applied []string   // data of every applied entry, in order; index = seq-1 after base
	base    uint64     // seq of a restored snapshot
	pending []pb.Entry // received, not yet applied (when manual)
	manual  bool       // apply only when the test says so
	commit  uint64     // the highest Ready.Commit seen
	need    string     // the last Ready.NeedSnapshot
	down    bool       // crashed: no deliveries
}

func newCluster(t *testing.T, opts pb.Options, names ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, opts: opts, nodes: map[string]*tnode{}}
	for _, n := range names {
		c.add(n, 0)
	}
	return c
}

// add creates a fresh replica whose state machine has applied 1..applied.
func (c *cluster) add(name string, applied uint64) *tnode {
	o := c.opts
	o.ID = name
	n := &tnode{name: name, core: pb.New(o, applied), base: applied}
	c.nodes[name] = n
	return n
}

func (c *cluster) node(name string) *tnode {
	c.t.Helper()
	n := c.nodes[name]
	if n == nil {
		c.t.Fatalf("no node %q", name)
	}
	return n
}

// config delivers cfg to the named replicas (all live ones if none named).
func (c *cluster) config(cfg pb.Config, names ...string) {
	c.t.Helper()
	if len(names) == 0 {
		for _, n := range c.nodes {
			names = append(names, n.name)
		}
		slices.Sort(names)
	}
	for _, name := range names {
		if n := c.node(name); !n.down {
			n.core.SetConfig(cfg)
			c.collect(n)
		}
	}
}

// collect plays the runtime after a call into n's core.
func (c *cluster) collect(n *tnode) {
	rd := n.core.Ready()
	for _, m := range rd.Messages {
		if c.drop == nil || !c.drop(m) {
			c.queue = append(c.queue, m)
		}
	}
	n.pending = append(n.pending, rd.Apply...)
	if rd.Commit != 0 {
		if rd.Commit <= n.commit {
			c.t.Fatalf("%s: Commit went from %d to %d", n.name, n.commit, rd.Commit)
		}
		n.commit = rd.Commit
	}
	if rd.NeedSnapshot != "" {
		n.need = rd.NeedSnapshot
	}
	if !n.manual && len(n.pending) > 0 {
		c.applyAll(n)
	}
}

// applyAll applies every pending entry of n and reports it.
func (c *cluster) applyAll(n *tnode) {
	c.applyN(n, len(n.pending))
}

func (c *cluster) applyN(n *tnode, k int) {
	c.t.Helper()
	if k == 0 {
		return
	}
	for _, e := range n.pending[:k] {
		if want := n.base + uint64(len(n.applied)) + 1; e.Seq != want {
			c.t.Fatalf("%s applies seq %d, want %d", n.name, e.Seq, want)
		}
		n.applied = append(n.applied, string(e.Data))
	}
	n.pending = n.pending[k:]
	n.core.Applied(n.base + uint64(len(n.applied)))
	c.collect(n)
}

// propose proposes data at name, applies it there and returns its seq.
func (c *cluster) propose(name, data string) uint64 {
	c.t.Helper()
	seq, err := c.tryPropose(name, data)
	if err != nil {
		c.t.Fatalf("Propose at %s: %v", name, err)
	}
	return seq
}

func (c *cluster) tryPropose(name, data string) (uint64, error) {
	n := c.node(name)
	seq, err := n.core.Propose([]byte(data))
	if err != nil {
		return 0, err
	}
	n.pending = append(n.pending, pb.Entry{Seq: seq, Data: []byte(data)})
	if !n.manual {
		c.applyAll(n)
	}
	return seq, nil
}

// deliver delivers the first queued message and returns it, or false.
func (c *cluster) deliver() (pb.Message, error, bool) {
	if len(c.queue) == 0 {
		return pb.Message{}, nil, false
	}
	m := c.queue[0]
	c.queue = c.queue[1:]
	n := c.nodes[m.To]
	if n == nil || n.down {
		return m, nil, true
	}
	err := n.core.Step(m)
	c.collect(n)
	return m, err, true
}

// run delivers until no message is left, failing on unexpected errors
// (stale epochs are expected after reconfigurations).
func (c *cluster) run() {
	c.t.Helper()
	for i := 0; ; i++ {
		if i > 100000 {
			c.t.Fatal("messages do not quiesce")
		}
		m, err, ok := c.deliver()
		if !ok {
			return
		}
		if err != nil && !errors.Is(err, pb.ErrStaleEpoch) {
			c.t.Fatalf("delivering %s %s->%s: %v", m.Type, m.From, m.To, err)
		}
	}
}

// tick ticks the named replica k times.
func (c *cluster) tick(name string, k int) {
	n := c.node(name)
	for range k {
		n.core.Tick()
		c.collect(n)
	}
}

// crash stops deliveries to name and drops what is queued for it.
func (c *cluster) crash(name string) {
	c.node(name).down = true
	c.queue = slices.DeleteFunc(c.queue, func(m pb.Message) bool { return m.To == name })
}

// restore installs a snapshot of src at name: src's state at its applied
// seq, src.Hold, name.Restored. It replaces name's state entirely, as a
// backup with a divergent suffix needs.
func (c *cluster) restore(name, src string) uint64 {
	c.t.Helper()
	j, s := c.node(name), c.node(src)
	seq := s.base + uint64(len(s.applied))
	if !j.core.AcceptsSnapshot(src) {
		c.t.Fatalf("%s refuses a snapshot at %d", name, seq)
	}
	s.core.Hold(seq)
	c.collect(s)
	j.applied = slices.Clone(s.applied)
	j.base, j.pending, j.need = s.base, nil, ""
	j.core.Restored(src, seq)
	c.collect(j)
	return seq
}

// status returns name's status.
func (c *cluster) status(name string) pb.Status { return c.node(name).core.Status() }

// wantApplied checks that name applied exactly data.
func (c *cluster) wantApplied(name string, data ...string) {
	c.t.Helper()
	n := c.node(name)
	if got := n.applied; !slices.Equal(got, data) {
		c.t.Fatalf("%s applied %q, want %q", name, got, data)
	}
}

// seqs returns "e1".."ek".
func seqs(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("e%d", i))
	}
	return out
}

func cfg(epoch uint64, joining string, members ...string) pb.Config {
	return pb.Config{Epoch: epoch, Members: members, Joining: joining}
}
