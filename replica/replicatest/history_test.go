package replicatest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockstep/lockstep/sim"
)

// TestClientsAcrossFailoverLinearizable runs concurrent clients that send
// SET and GET to any replica's RESP server (so forwarding, forwarded
// retries and the dedup of forwarded writes are all in play) while the
// head or primary fails: its lease lapses, it is cut off, and the others
// are reconfigured without it. The history must be linearizable per key.
// A request that failed is kept as pending (a write's outcome is then
// unknown); a failed read is dropped, as it had no effect.
func TestClientsAcrossFailoverLinearizable(t *testing.T) {
	for _, protocol := range protocols {
		t.Run(protocol, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 9*time.Second)
			defer cancel()
			c := startGroup(t, ctx, protocol)
			seed := testSeed(t)
			var rec recorder
			var wg sync.WaitGroup
			const clients, ops = 4, 30
			for i := range clients {
				wg.Go(func() { runClient(ctx, c, &rec, i, ops, rand.New(rand.NewPCG(seed, uint64(i)))) })
			}
			if err := WaitFor(ctx, "clients to make progress", func() bool { return rec.completed.Load() >= clients*ops/3 }); err != nil {
				t.Fatal(err)
			}
			c.Node("r1").Lease.Lapse()
			c.Net.Isolate("r1")
			rest := []string{"r2", "r3"}
			reconfigure(t, ctx, c, View{Members: rest, To: rest})
			wg.Wait()
			checkHistory(t, &rec, seed)
		})
	}
}

// recorder is a History shared by client goroutines.
type recorder struct {
	mu        sync.Mutex
	h         sim.History
	completed atomic.Int64
}

func (r *recorder) invoke(client int, in sim.KVInput) sim.OpID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.h.Invoke(client, in)
}

func (r *recorder) finish(id sim.OpID, out *sim.KVOutput, read bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case out != nil:
		r.h.Return(id, *out)
		r.completed.Add(1)
	case read:
		r.h.Forget(id)
	}
}

// runClient makes ops requests, one at a time, each to a replica, key and
// operation rnd picks; every value written is unique.
func runClient(ctx context.Context, c *Cluster, rec *recorder, client, ops int, rnd *rand.Rand) {
	nodes := c.Nodes()
	for i := range ops {
		n := nodes[rnd.IntN(len(nodes))]
		key := []string{"a", "b"}[rnd.IntN(2)]
		in := sim.KVInput{Op: sim.KVGet, Key: key}
		args := []string{"GET", key}
		if rnd.IntN(2) == 0 {
			in = sim.KVInput{Op: sim.KVPut, Key: key, Value: fmt.Sprintf("c%d-%d", client, i)}
			args = []string{"SET", key, in.Value}
		}
		id := rec.invoke(client, in)
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		v, err := n.Do(rctx, args...)
		cancel()
		var out *sim.KVOutput
		if isValue(v, err) {
			out = &sim.KVOutput{Value: string(v.Str)}
		}
		rec.finish(id, out, in.Op == sim.KVGet)
	}
}

// checkHistory checks the history with porcupine; a violation's
// visualization is kept in the temporary directory, named by the seed.
func checkHistory(t *testing.T, rec *recorder, seed uint64) {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	t.Logf("%d operations, %d completed, %d pending", rec.h.Len(), rec.completed.Load(), rec.h.Pending())
	if rec.completed.Load() == 0 {
		t.Fatal("no operation completed")
	}
	html := filepath.Join(os.TempDir(), fmt.Sprintf("replicatest-%s-%d.html", strings.ReplaceAll(t.Name(), "/", "-"), seed))
	if err := sim.CheckLinearizable(&rec.h, 10*time.Second, html); err != nil {
		t.Fatal(err)
	}
}
