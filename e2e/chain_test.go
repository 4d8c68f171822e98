package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/redis/go-redis/v9"

	"github.com/lockstep/lockstep/internal/proctest"
	"github.com/lockstep/lockstep/sim"
)

// recorder is a sim.History safe for concurrent clients: the order of
// Invoke and Return calls under its lock is a valid real-time order,
// because an operation is invoked before its request is sent and returned
// after its reply arrived.
type recorder struct {
	mu sync.Mutex
	h  sim.History
}

func (r *recorder) invoke(client int, in sim.KVInput) sim.OpID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.h.Invoke(client, in)
}

func (r *recorder) ret(id sim.OpID, out sim.KVOutput) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.h.Return(id, out)
}

// workload runs clients that write and read a few keys through every
// node, moving to another node when theirs fails. Writes whose outcome is
// unknown stay pending in the history; failed reads are not recorded.
type workload struct {
	c       *cluster
	rec     recorder
	keys    int
	acked   atomic.Int64
	addrs   func() []string
	lastErr atomic.Value
}

func (w *workload) run(ctx context.Context, clients int, seed uint64) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.client(ctx, i, rand.New(rand.NewPCG(seed, uint64(i))))
		}()
	}
	return &wg
}

func (w *workload) client(ctx context.Context, id int, rng *rand.Rand) {
	var rc *redis.Client
	defer func() {
		if rc != nil {
			rc.Close()
		}
	}()
	for n := 0; ctx.Err() == nil; n++ {
		if rc == nil {
			addrs := w.addrs()
			rc = redis.NewClient(&redis.Options{Addr: addrs[(id+n)%len(addrs)], MaxRetries: -1,
				DialTimeout: time.Second, ReadTimeout: 20 * time.Second, PoolSize: 1})
		}
		key := "key" + strconv.Itoa(rng.IntN(w.keys))
		octx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
		var err error
		if rng.IntN(2) == 0 {
			val := fmt.Sprintf("c%d-%d", id, n)
			op := w.rec.invoke(id, sim.KVInput{Op: sim.KVPut, Key: key, Value: val})
			if err = rc.Set(octx, key, val, 0).Err(); err == nil {
				w.rec.ret(op, sim.KVOutput{})
				w.acked.Add(1)
			}
		} else {
			op := w.rec.invoke(id, sim.KVInput{Op: sim.KVGet, Key: key})
			var v string
			if v, err = rc.Get(octx, key).Result(); err == nil || err == redis.Nil {
				w.rec.ret(op, sim.KVOutput{Value: v})
				err = nil
			}
		}
		cancel()
		if err != nil {
			// The operation stays pending (a write) or is dropped from the
			// check (a read has no effect). Reconnect elsewhere.
			w.lastErr.Store(err.Error())
			rc.Close()
			rc = nil
		}
	}
}

// checkLinearizable runs porcupine over the recorded history, by key.
func checkLinearizable(t *testing.T, rec *recorder) {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	res, info := sim.CheckKV(&rec.h, 60*time.Second)
	t.Logf("history: %d operations, %d pending", rec.h.Len(), rec.h.Pending())
	switch res {
	case porcupine.Ok:
	case porcupine.Unknown:
		t.Log("porcupine ran out of time; linearizability not decided")
	default:
		f, _ := os.CreateTemp("", "lockstep-history-*.html")
		if f != nil {
			_ = porcupine.Visualize(sim.KVModel(), info, f)
			f.Close()
			t.Errorf("history is not linearizable; visualization in %s", f.Name())
		} else {
			t.Error("history is not linearizable")
		}
	}
}

// TestChainSurvivesKills runs 8 clients against a 3-node chain while it
// kills the head, then a middle, then the tail, each time restarting the
// killed node (it rejoins behind the tail from a snapshot). The history of
// acknowledged operations must be linearizable, and every node must end
// with the same data. It runs twice: with the servers' watchdogs, which
// fence a killed node at once, and without, so that each death is found
// by its lease expiring, as a host failure would be.
func TestChainSurvivesKills(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: several failovers with real processes")
	}
	t.Run("fenced", func(t *testing.T) { chainSurvivesKills(t) })
	t.Run("lease", func(t *testing.T) { chainSurvivesKills(t, "--fence-on-exit=false") })
}

func chainSurvivesKills(t *testing.T, extra ...string) {
	c := startClusterArgs(t, 3, "", func(string) []string { return extra })
	w := &workload{c: c, keys: 5, addrs: c.addrs}
	ctx, cancel := context.WithCancel(context.Background())
	seed := uint64(time.Now().UnixNano())
	t.Logf("workload seed %d", seed)
	wg := w.run(ctx, 8, seed)

	for _, role := range []string{"head", "middle", "tail"} {
		before := w.acked.Load()
		proctest.Eventually(t, 20*time.Second, "progress before the kill", func() bool { return w.acked.Load() > before+50 })
		victim := c.status().byRole(role)
		if victim == "" {
			t.Fatalf("no %s in %s", role, statusRoles(c.status()))
		}
		killed := time.Now()
		c.kill(victim)
		mark := w.acked.Load()
		proctest.Eventually(t, 20*time.Second, "writes after killing the "+role, func() bool { return w.acked.Load() > mark+20 })
		t.Logf("killed %s (%s): writes resumed within %v", role, victim, time.Since(killed).Round(time.Millisecond))
		c.waitMembers(2, 20*time.Second)
		c.start(victim)
		st := c.waitMembers(3, 30*time.Second)
		t.Logf("%s rejoined: %s epoch %d", victim, statusRoles(st), st.Epoch)
	}
	cancel()
	wg.Wait()
	if w.acked.Load() < 300 {
		t.Fatalf("only %d writes acknowledged (last error %v)", w.acked.Load(), w.lastErr.Load())
	}
	checkSameData(t, c, w.keys)
	checkLinearizable(t, &w.rec)
}

// checkSameData reads every key through every node. Each node forwards
// reads to the tail, so all must agree.
func checkSameData(t *testing.T, c *cluster, keys int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var want []string
	for name, p := range c.procs {
		rc := redis.NewClient(&redis.Options{Addr: p.Addr})
		var got []string
		for k := range keys {
			v, err := rc.Get(ctx, "key"+strconv.Itoa(k)).Result()
			if err != nil && err != redis.Nil {
				t.Fatalf("%s: GET key%d: %v", name, k, err)
			}
			got = append(got, v)
		}
		rc.Close()
		if want == nil {
			want = got
		} else if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s reads %v, another node reads %v", name, got, want)
		}
	}
}

// TestPausedTailStopsServingReads freezes the tail with SIGSTOP (it can
// no longer renew its lease: a partition from etcd), lets the chain
// replace it and take a new write, then thaws it: the old tail must not
// answer a read with the value it held.
func TestPausedTailStopsServingReads(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: waits for a lease to expire")
	}
	c := startCluster(t, 3)
	st := c.status()
	head, tail := st.byRole("head"), st.byRole("tail")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hc := redis.NewClient(&redis.Options{Addr: c.procs[head].Addr, MaxRetries: -1, ReadTimeout: 30 * time.Second})
	defer hc.Close()
	if err := hc.Set(ctx, "k", "old", 0).Err(); err != nil {
		t.Fatal(err)
	}
	tp := c.procs[tail]
	c.freeze(tail)
	// The head blocks this write until the frozen tail is removed.
	start := time.Now()
	defer func() { t.Logf("write while frozen took %v", time.Since(start)) }()
	if err := hc.Set(ctx, "k", "new", 0).Err(); err != nil {
		t.Fatalf("write while the tail is frozen: %v", err)
	}
	if r := c.status().byRole("tail"); r == tail {
		c.dumpLogs()
		for name, p := range c.procs {
			if name != tail {
				info, _ := redis.NewClient(&redis.Options{Addr: p.Addr}).Info(ctx, "replication").Result()
				t.Logf("%s: %s", name, info)
			}
		}
		_ = tp.Signal(syscall.SIGCONT)
		info, err := redis.NewClient(&redis.Options{Addr: tp.Addr}).Info(ctx, "replication").Result()
		t.Logf("thawed %s: %s %v", tail, info, err)
		t.Fatalf("frozen %s is still the tail, yet the write was acknowledged after %v", tail, time.Since(start))
	}
	if err := tp.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	oc := redis.NewClient(&redis.Options{Addr: tp.Addr, MaxRetries: -1, ReadTimeout: 30 * time.Second})
	defer oc.Close()
	checkNoStaleRead(t, ctx, oc, "k", "new", "old tail")
	// Its session is gone; the process does not exit but joins again as a
	// new incarnation, and the chain is whole again without an operator.
	c.waitMembers(3, 30*time.Second)
	if tp.Exited() {
		t.Fatalf("the thawed tail exited instead of joining again:\n%s", tp.Log())
	}
	if v, err := oc.Get(ctx, "k").Result(); err != nil || v != "new" {
		t.Fatalf("GET through the rejoined node = %q, %v", v, err)
	}
}
