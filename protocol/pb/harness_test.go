package pb_test

import (
	"fmt"
	"testing"

	"github.com/lockstep/lockstep/protocol/pb"
	"github.com/lockstep/lockstep/sim"
)

// cluster is a hand-driven primary-backup group for focused tests (see sim.Cluster).
type cluster struct {
	*sim.Cluster[pb.Message, pb.Config, *pb.Core]
}

func newCluster(t *testing.T, opts pb.Options, names ...string) *cluster {
	t.Helper()
	return &cluster{sim.NewCluster(t, protocol(opts), names...)}
}

// protocol adapts the primary-backup core to package sim, for the
// hand-driven cluster and the simulated world alike.
func protocol(opts pb.Options) sim.Protocol[pb.Message, pb.Config, *pb.Core] {
	return sim.Protocol[pb.Message, pb.Config, *pb.Core]{
		New: func(id string, applied uint64) *pb.Core {
			o := opts
			o.ID = id
			return pb.New(o, applied)
		},
		Ready: func(c *pb.Core) sim.Effects[pb.Message] {
			rd := c.Ready()
			return sim.Effects[pb.Message]{Messages: rd.Messages, Apply: simEntries(rd.Apply), Commit: rd.Commit, NeedSnapshot: rd.NeedSnapshot}
		},
		To:       func(m pb.Message) string { return m.To },
		Describe: func(m pb.Message) string { return fmt.Sprintf("%s %s->%s", m.Type, m.From, m.To) },
		Expected: pb.ErrStaleEpoch,
		// A backup or joiner takes its snapshot from its primary:
		// the core checks the source.
		AcceptsSnapshot: func(c *pb.Core, src string, _ uint64) bool { return c.AcceptsSnapshot(src) },
		Restored:        func(c *pb.Core, src string, seq uint64) { c.Restored(src, seq) },
	}
}

func simEntries(es []pb.Entry) []sim.Entry {
	out := make([]sim.Entry, len(es))
	for i, e := range es {
		out[i] = sim.Entry{Seq: e.Seq, Data: e.Data}
	}
	return out
}

// status returns name's status.
func (c *cluster) status(name string) pb.Status { return c.Node(name).Core.Status() }

// seqs returns "e<from>".."e<to>".
func seqs(from, to int) []string { return sim.Labels("e", from, to) }

func cfg(epoch uint64, joining string, members ...string) pb.Config {
	return pb.Config{Epoch: epoch, Members: members, Joining: joining}
}
