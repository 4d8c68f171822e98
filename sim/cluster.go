package sim

import (
	"errors"
	"slices"

	"github.com/lockstep/lockstep/protocol"
)

// TB is the part of testing.TB that the test drivers of this package
// report through, so that package sim need not import testing.
type TB interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Entry is an update as Cluster sees it: the runtime applies it at Seq.
type Entry = protocol.Entry

// Protocol is what Cluster and World need of a core package besides the
// contract (protocol.Core) its core implements: its constructor and
// codec, through which every message passes on its way from one core's
// Ready to another's Step, and how to read the typed messages that the
// tests filter and the traces describe. M is the package's message type.
type Protocol[M any, R protocol.Core] struct {
	// New returns a core for replica id whose state machine has applied
	// 1..applied.
	New func(id string, applied uint64) R
	// Encode appends m in the package's wire format, Decode reads it.
	Encode func(b []byte, m M) []byte
	Decode func(payload []byte) (M, error)
	// To names the recipient of a message.
	To func(m M) string
	// Describe names a message in a failure report.
	Describe func(m M) string
}

// messages decodes the messages of a Ready, failing with a violation of
// the contract if a core's outbox encodes one its own codec cannot read.
func (p Protocol[M, R]) messages(out protocol.Outbox) ([]M, error) {
	if out == nil {
		return nil, nil
	}
	ms := make([]M, 0, out.Len())
	for i := range out.Len() {
		to, b := out.Encode(i, nil)
		m, err := p.Decode(b)
		if err != nil {
			return nil, Violation("message %d to %s does not decode: %v", i, to, err)
		}
		if got := p.To(m); got != to {
			return nil, Violation("message %d is for %q but its outbox names %q", i, got, to)
		}
		ms = append(ms, m)
	}
	return ms, nil
}

// step encodes m and steps it at core, as a runtime delivers it.
func (p Protocol[M, R]) step(core R, m M) error { return core.Step(p.Encode(nil, m)) }

// Refused reports whether err is a core's refusal of a message of another
// epoch, which a runtime tolerates (drops, or keeps for a newer
// configuration) rather than treats as a failure.
func Refused(err error) bool { return errors.Is(err, protocol.ErrStaleEpoch) }

// Cluster is a hand-driven group for focused tests of a core: one FIFO
// queue of messages, delivered one at a time or until quiet, with a filter
// that may drop messages, and runtimes that apply at once unless told to
// hold. It fails the test (through TB) when a core breaks a rule of its
// Ready contract.
type Cluster[M any, R protocol.Core] struct {
	T     TB
	P     Protocol[M, R]
	Nodes map[string]*Node[R]
	Queue []M
	Drop  func(M) bool // drops a message when it returns true
}

// Node is one replica and the runtime around it.
type Node[R any] struct {
	Name    string
	Core    R
	Applied []string // data of every applied entry, in order; index = seq-1 after Base
	Base    uint64   // seq of a restored snapshot
	Pending []Entry  // received, not yet applied (when Manual)
	Manual  bool     // apply only when the test says so
	Commit  uint64   // the highest Ready.Commit seen
	Need    string   // the last Ready.NeedSnapshot
	Down    bool     // crashed: no deliveries
}

// NewCluster returns a cluster of fresh replicas with the given names.
func NewCluster[M any, R protocol.Core](t TB, p Protocol[M, R], names ...string) *Cluster[M, R] {
	t.Helper()
	c := &Cluster[M, R]{T: t, P: p, Nodes: map[string]*Node[R]{}}
	for _, n := range names {
		c.Add(n, 0)
	}
	return c
}

// Add creates a fresh replica whose state machine has applied 1..applied.
func (c *Cluster[M, R]) Add(name string, applied uint64) *Node[R] {
	n := &Node[R]{Name: name, Core: c.P.New(name, applied), Base: applied}
	c.Nodes[name] = n
	return n
}

// Node returns the replica name, failing the test if there is none.
func (c *Cluster[M, R]) Node(name string) *Node[R] {
	c.T.Helper()
	n := c.Nodes[name]
	if n == nil {
		c.T.Fatalf("no node %q", name)
	}
	return n
}

// Config delivers cfg to the named replicas (all live ones if none named).
func (c *Cluster[M, R]) Config(cfg Config, names ...string) {
	c.T.Helper()
	if len(names) == 0 {
		for _, n := range c.Nodes {
			names = append(names, n.Name)
		}
		slices.Sort(names)
	}
	for _, name := range names {
		if n := c.Node(name); !n.Down {
			n.Core.SetConfig(cfg)
			c.Collect(n)
		}
	}
}

// Collect plays the runtime after a call into n's core.
func (c *Cluster[M, R]) Collect(n *Node[R]) {
	rd := n.Core.Ready()
	msgs, err := c.P.messages(rd.Messages)
	if err != nil {
		c.T.Fatalf("%s: %v", n.Name, err)
	}
	for _, m := range msgs {
		if c.Drop == nil || !c.Drop(m) {
			c.Queue = append(c.Queue, m)
		}
	}
	n.Pending = append(n.Pending, rd.Apply...)
	if rd.Commit != 0 {
		if rd.Commit <= n.Commit {
			c.T.Fatalf("%s: Commit went from %d to %d", n.Name, n.Commit, rd.Commit)
		}
		n.Commit = rd.Commit
	}
	if rd.NeedSnapshot != "" {
		n.Need = rd.NeedSnapshot
	}
	if !n.Manual && len(n.Pending) > 0 {
		c.ApplyAll(n)
	}
}

// ApplyAll applies every pending entry of n and reports it.
func (c *Cluster[M, R]) ApplyAll(n *Node[R]) {
	c.ApplyN(n, len(n.Pending))
}

// ApplyN applies the first k pending entries of n and reports them.
func (c *Cluster[M, R]) ApplyN(n *Node[R], k int) {
	c.T.Helper()
	if k == 0 {
		return
	}
	for _, e := range n.Pending[:k] {
		if want := n.Base + uint64(len(n.Applied)) + 1; e.Seq != want {
			c.T.Fatalf("%s applies seq %d, want %d", n.Name, e.Seq, want)
		}
		n.Applied = append(n.Applied, string(e.Data))
	}
	n.Pending = n.Pending[k:]
	n.Core.Applied(n.Base + uint64(len(n.Applied)))
	c.Collect(n)
}

// Propose proposes data at name, applies it there and returns its seq.
func (c *Cluster[M, R]) Propose(name, data string) uint64 {
	c.T.Helper()
	seq, err := c.TryPropose(name, data)
	if err != nil {
		c.T.Fatalf("Propose at %s: %v", name, err)
	}
	return seq
}

// TryPropose is Propose returning the core's error.
func (c *Cluster[M, R]) TryPropose(name, data string) (uint64, error) {
	n := c.Node(name)
	seq, err := n.Core.Propose([]byte(data))
	if err != nil {
		return 0, err
	}
	n.Pending = append(n.Pending, Entry{Seq: seq, Data: []byte(data)})
	if !n.Manual {
		c.ApplyAll(n)
	}
	return seq, nil
}

// Deliver delivers the first queued message and returns it with the
// error of Step, or reports false if the queue is empty. A message to a
// crashed replica is lost.
func (c *Cluster[M, R]) Deliver() (M, bool, error) {
	var m M
	if len(c.Queue) == 0 {
		return m, false, nil
	}
	m = c.Queue[0]
	c.Queue = c.Queue[1:]
	n := c.Nodes[c.P.To(m)]
	if n == nil || n.Down {
		return m, true, nil
	}
	err := c.P.step(n.Core, m)
	c.Collect(n)
	return m, true, err
}

// Run delivers until no message is left, failing on errors other than a
// refusal of another epoch's message (see Refused).
func (c *Cluster[M, R]) Run() {
	c.T.Helper()
	for i := 0; ; i++ {
		if i > 100000 {
			c.T.Fatalf("messages do not quiesce")
		}
		m, ok, err := c.Deliver()
		if !ok {
			return
		}
		if err != nil && !Refused(err) {
			c.T.Fatalf("delivering %s: %v", c.P.Describe(m), err)
		}
	}
}

// Tick ticks the named replica k times.
func (c *Cluster[M, R]) Tick(name string, k int) {
	n := c.Node(name)
	for range k {
		n.Core.Tick()
		c.Collect(n)
	}
}

// Crash stops deliveries to name and drops what is queued for it.
func (c *Cluster[M, R]) Crash(name string) {
	c.Node(name).Down = true
	c.Queue = slices.DeleteFunc(c.Queue, func(m M) bool { return c.P.To(m) == name })
}

// Restore installs a snapshot of src at name: src's state at its applied
// seq, src.Hold, name.Restored. It replaces name's state entirely, and
// returns the seq of the snapshot.
func (c *Cluster[M, R]) Restore(name, src string) uint64 {
	c.T.Helper()
	j, s := c.Node(name), c.Node(src)
	seq := s.Base + uint64(len(s.Applied))
	if !j.Core.AcceptsSnapshot(src, seq) {
		c.T.Fatalf("%s refuses a snapshot of %s at %d", name, src, seq)
	}
	s.Core.Hold(seq)
	c.Collect(s)
	j.Applied = slices.Clone(s.Applied)
	j.Base, j.Pending, j.Need = s.Base, nil, ""
	j.Core.Restored(src, seq)
	c.Collect(j)
	return seq
}

// WantApplied checks that name applied exactly data.
func (c *Cluster[M, R]) WantApplied(name string, data ...string) {
	c.T.Helper()
	if got := c.Node(name).Applied; !slices.Equal(got, data) {
		c.T.Fatalf("%s applied %q, want %q", name, got, data)
	}
}

// DropN returns a filter for Cluster.Drop that drops the first n messages
// matching match.
func DropN[M any](n int, match func(M) bool) func(M) bool {
	return func(m M) bool {
		if n > 0 && match(m) {
			n--
			return true
		}
		return false
	}
}
