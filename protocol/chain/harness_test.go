package chain_test

import (
	"fmt"
	"testing"

	"github.com/lockstep/lockstep/protocol/chain"
	"github.com/lockstep/lockstep/sim"
)

// cluster is a hand-driven chain for focused tests (see sim.Cluster).
type cluster struct {
	*sim.Cluster[chain.Message, chain.Config, *chain.Core]
}

func newCluster(t *testing.T, opts chain.Options, names ...string) *cluster {
	t.Helper()
	return &cluster{sim.NewCluster(t, protocol(opts), names...)}
}

// protocol adapts the chain core to package sim, for the hand-driven cluster
// and the simulated world alike.
func protocol(opts chain.Options) sim.Protocol[chain.Message, chain.Config, *chain.Core] {
	return sim.Protocol[chain.Message, chain.Config, *chain.Core]{
		New: func(id string, applied uint64) *chain.Core {
			o := opts
			o.ID = id
			return chain.New(o, applied)
		},
		Ready: func(c *chain.Core) sim.Effects[chain.Message] {
			rd := c.Ready()
			return sim.Effects[chain.Message]{Messages: rd.Messages, Apply: simEntries(rd.Apply), Commit: rd.Commit, NeedSnapshot: rd.NeedSnapshot}
		},
		To:       func(m chain.Message) string { return m.To },
		Describe: func(m chain.Message) string { return fmt.Sprintf("%s %s->%s", m.Type, m.From, m.To) },
		Expected: chain.ErrStaleEpoch,
		// A chain replica takes its snapshot from its predecessor,
		// whichever it is: only the seq matters.
		AcceptsSnapshot: func(c *chain.Core, _ string, seq uint64) bool { return c.AcceptsSnapshot(seq) },
		Restored:        func(c *chain.Core, _ string, seq uint64) { c.Restored(seq) },
	}
}

func simEntries(es []chain.Entry) []sim.Entry {
	out := make([]sim.Entry, len(es))
	for i, e := range es {
		out[i] = sim.Entry{Seq: e.Seq, Data: e.Data}
	}
	return out
}

// status returns name's status.
func (c *cluster) status(name string) chain.Status { return c.Node(name).Core.Status() }

// seqs returns "e<from>".."e<to>".
func seqs(from, to int) []string { return sim.Labels("e", from, to) }

func cfg(epoch uint64, joining string, members ...string) chain.Config {
	return chain.Config{Epoch: epoch, Members: members, Joining: joining}
}
