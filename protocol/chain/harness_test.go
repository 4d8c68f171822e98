package chain_test

import (
	"fmt"
	"testing"

	"github.com/lockstep/lockstep/protocol/chain"
	"github.com/lockstep/lockstep/sim"
)

// cluster is a hand-driven chain for focused tests (see sim.Cluster).
type cluster struct {
	*sim.Cluster[chain.Message, *chain.Core]
}

func newCluster(t *testing.T, opts chain.Options, names ...string) *cluster {
	t.Helper()
	return &cluster{sim.NewCluster(t, protocol(opts), names...)}
}

// protocol is the chain's codec and constructor for package sim, for the hand-driven cluster
// and the simulated world alike.
func protocol(opts chain.Options) sim.Protocol[chain.Message, *chain.Core] {
	return sim.Protocol[chain.Message, *chain.Core]{
		New: func(id string, applied uint64) *chain.Core {
			o := opts
			o.ID = id
			return chain.New(o, applied)
		},
		Encode:   chain.AppendMessage,
		Decode:   chain.DecodeMessage,
		To:       func(m chain.Message) string { return m.To },
		Describe: func(m chain.Message) string { return fmt.Sprintf("%s %s->%s", m.Type, m.From, m.To) },
	}
}

// status returns name's status.
func (c *cluster) status(name string) chain.Status { return c.Node(name).Core.Detail() }

// seqs returns "e<from>".."e<to>".
func seqs(from, to int) []string { return sim.Labels("e", from, to) }

func cfg(epoch uint64, joining string, members ...string) chain.Config {
	return chain.Config{Epoch: epoch, Members: members, Joining: joining}
}
