package replicatest

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestJoinerCatchesUpBySnapshot checks the state transfer path over the
// in-memory network in every protocol: a fourth replica joins a group
// that already holds writes, fetches a snapshot through a memnet stream,
// catches up with writes made meanwhile, and once made a member holds
// byte-identical state to the others (lockstep.digest).
func TestJoinerCatchesUpBySnapshot(t *testing.T) {
	for _, protocol := range protocols {
		t.Run(protocol, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
			defer cancel()
			c := startCluster(t, ctx, protocol, []string{"r1", "r2", "r3", "r4"})
			head := c.Node("r1")
			for i := range 20 {
				expect(t, "write before the join", "+OK")(head.Write(ctx, "SET", fmt.Sprint("k", i), "before"))
			}
			if _, err := c.Configure(View{Members: []string{"r1", "r2", "r3"}, Joining: "r4"}); err != nil {
				t.Fatal(err)
			}
			for i := range 20 {
				expect(t, "write during the join", "+OK")(head.Write(ctx, "SET", fmt.Sprint("k", i), "during"))
			}
			joiner := c.Node("r4")
			if err := WaitFor(ctx, "r4 to catch up", func() bool { return joiner.Replica.Status().CaughtUp }); err != nil {
				t.Fatal(err)
			}
			if c.Net.Stats().Streams == 0 {
				t.Fatal("r4 caught up without a snapshot stream")
			}
			members := []string{"r1", "r2", "r3", "r4"}
			reconfigure(t, ctx, c, View{Members: members})
			expect(t, "write after the join", "+OK")(head.Write(ctx, "SET", "k0", "after"))
			expect(t, "read through r4", "$after")(joiner.Do(ctx, "GET", "k0"))
			if err := WaitFor(ctx, "equal digests", func() bool { return sameDigests(ctx, c) }); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// sameDigests reports whether every replica answers lockstep.digest
// with the same state and seq.
func sameDigests(ctx context.Context, c *Cluster) bool { return digestsEqual(ctx, c.Nodes()) }

// digestsEqual reports whether nodes answer lockstep.digest with the same
// state and seq.
func digestsEqual(ctx context.Context, nodes []*Node) bool {
	var first string
	for i, n := range nodes {
		v, err := n.Read(ctx, "lockstep.digest")
		if !isValue(v, err) || (i > 0 && string(v.Str) != first) {
			return false
		}
		first = string(v.Str)
	}
	return true
}
