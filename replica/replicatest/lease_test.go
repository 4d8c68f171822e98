package replicatest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/lockstep/lockstep/replica"
)

// TestLapsedLeaseRefusesService checks the fencing rule of every
// protocol: a replica whose coordinator lease has lapsed must stop
// answering reads and acknowledging writes, because the coordinator may
// already have replaced it. The test then stages the case the rule
// exists for: the group moves on without the replica, takes a new write,
// and the cut-off replica, which still believes it is tail or primary,
// must never answer with the old value.
func TestLapsedLeaseRefusesService(t *testing.T) {
	for _, protocol := range protocols {
		t.Run(protocol, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
			defer cancel()
			c := startGroup(t, ctx, protocol)
			members := []string{"r1", "r2", "r3"}
			old := c.Node(reader(protocol, members))
			expect(t, "first write at r1", "+OK")(c.Node("r1").Write(ctx, "SET", "k", "old"))
			expect(t, "read at "+old.Name+" with a valid lease", "$old")(old.Read(ctx, "lockstep.read", "GET", "k"))

			old.Lease.Lapse()
			refusesReads(t, ctx, old, "its lease lapsed")
			if protocol == replica.ProtocolChain {
				// A chain's tail orders no writes; its head's lease
				// guards them.
				head := c.Node("r1")
				head.Lease.Lapse()
				refusesWrites(t, ctx, head)
				head.Lease.Renew()
			} else {
				refusesWrites(t, ctx, old)
			}

			// The coordinator removes the cut-off replica; the others
			// move on and take a write it never sees.
			c.Net.Isolate(old.Name)
			rest := slices.DeleteFunc(slices.Clone(members), func(n string) bool { return n == old.Name })
			reconfigure(t, ctx, c, View{Members: rest, To: rest})
			expect(t, "write in the new configuration", "+OK")(c.Node(rest[0]).Write(ctx, "SET", "k", "new"))
			expect(t, "read at the new "+reader(protocol, rest), "$new")(c.Node(reader(protocol, rest)).Read(ctx, "lockstep.read", "GET", "k"))
			refusesReads(t, ctx, old, "the group moved on to \"new\" without it (a stale read)")
			if st := old.Replica.Status(); st.Epoch != 1 {
				t.Fatalf("%s installed epoch %d while cut off; the test meant it to keep epoch 1", old.Name, st.Epoch)
			}
		})
	}
}

// refusesReads checks that n answers no read from its state: not to a
// replica's forwarded read, not to a client's read through Replica.Read
// (which forwards and gives up), and not over its RESP server.
func refusesReads(t *testing.T, ctx context.Context, n *Node, when string) {
	t.Helper()
	pctx, cancel := probeCtx(ctx)
	defer cancel()
	if v, err := n.Read(pctx, "lockstep.read", "GET", "k"); isValue(v, err) {
		t.Fatalf("%s answered a forwarded read with %s after %s", n.Name, show(v, err), when)
	}
	if v, err := n.Read(pctx, "GET", "k"); isValue(v, err) {
		t.Fatalf("%s answered a read with %s after %s", n.Name, show(v, err), when)
	}
	if v, err := n.Do(pctx, "GET", "k"); isValue(v, err) {
		t.Fatalf("%s answered a client's GET with %s after %s", n.Name, show(v, err), when)
	}
}

// refusesWrites checks that n, which orders writes, acknowledges none
// once its lease lapsed: neither a forwarded write nor a client's.
func refusesWrites(t *testing.T, ctx context.Context, n *Node) {
	t.Helper()
	pctx, cancel := probeCtx(ctx)
	defer cancel()
	if v, err := n.Write(pctx, "lockstep.fwd", "probe", "1", "SET", "k", "lapsed"); isValue(v, err) {
		t.Fatalf("%s acknowledged a forwarded write with %s after its lease lapsed", n.Name, show(v, err))
	}
	if v, err := n.Write(pctx, "SET", "k", "lapsed"); isValue(v, err) {
		t.Fatalf("%s acknowledged a write with %s after its lease lapsed", n.Name, show(v, err))
	}
}
