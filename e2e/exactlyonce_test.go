package e2e

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockstep/lockstep/internal/proctest"
)

// TestForwardedWritesApplyOnceAcrossFailover sends INCRs through the
// middle and the tail (which forward them to the head) while the head is
// killed. The forwarders retry in-flight requests at the new head with the
// same request ids, so each INCR is applied at most once: the counter ends
// at least at the number acknowledged and at most at the number sent.
func TestForwardedWritesApplyOnceAcrossFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: a failover with real processes")
	}
	c := startCluster(t, 3)
	st := c.status()
	head := st.byRole("head")
	var entry []string
	for _, n := range st.Nodes {
		if n.Name != head {
			entry = append(entry, c.procs[n.Name].Addr)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var sent, acked atomic.Int64
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc := redis.NewClient(&redis.Options{Addr: entry[i%len(entry)], MaxRetries: -1, ReadTimeout: 30 * time.Second, PoolSize: 1})
			defer rc.Close()
			for ctx.Err() == nil {
				sent.Add(1)
				octx, ocancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := rc.Incr(octx, "counter").Err()
				ocancel()
				if err == nil {
					acked.Add(1)
				}
			}
		}()
	}
	proctest.Eventually(t, 20*time.Second, "INCRs before the kill", func() bool { return acked.Load() > 200 })
	c.kill(head)
	mark := acked.Load()
	proctest.Eventually(t, 20*time.Second, "INCRs after the failover", func() bool { return acked.Load() > mark+200 })
	cancel()
	wg.Wait()
	rc := redis.NewClient(&redis.Options{Addr: entry[0]})
	defer rc.Close()
	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer rcancel()
	got, err := rc.Get(rctx, "counter").Int64()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("counter %d: %d INCRs sent, %d acknowledged", got, sent.Load(), acked.Load())
	if got < acked.Load() || got > sent.Load() {
		t.Fatalf("counter %d outside [acknowledged %d, sent %d]: an INCR was lost or applied twice", got, acked.Load(), sent.Load())
	}
}
