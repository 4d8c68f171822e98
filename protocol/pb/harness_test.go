package pb_test

import (
	"fmt"
	"testing"

	"github.com/lockstep/lockstep/protocol/pb"
	"github.com/lockstep/lockstep/sim"
)

// cluster is a hand-driven primary-backup group for focused tests (see sim.Cluster).
type cluster struct {
	*sim.Cluster[pb.Message, *pb.Core]
}

func newCluster(t *testing.T, opts pb.Options, names ...string) *cluster {
	t.Helper()
	return &cluster{sim.NewCluster(t, protocol(opts), names...)}
}

// protocol is primary-backup's codec and constructor for package sim, for
// the hand-driven cluster and the simulated world alike.
func protocol(opts pb.Options) sim.Protocol[pb.Message, *pb.Core] {
	return sim.Protocol[pb.Message, *pb.Core]{
		New: func(id string, applied uint64) *pb.Core {
			o := opts
			o.ID = id
			return pb.New(o, applied)
		},
		Encode:   pb.AppendMessage,
		Decode:   pb.DecodeMessage,
		To:       func(m pb.Message) string { return m.To },
		Describe: func(m pb.Message) string { return fmt.Sprintf("%s %s->%s", m.Type, m.From, m.To) },
	}
}

// status returns name's status.
func (c *cluster) status(name string) pb.Status { return c.Node(name).Core.Detail() }

// seqs returns "e<from>".."e<to>".
func seqs(from, to int) []string { return sim.Labels("e", from, to) }

func cfg(epoch uint64, joining string, members ...string) pb.Config {
	return pb.Config{Epoch: epoch, Members: members, Joining: joining}
}
