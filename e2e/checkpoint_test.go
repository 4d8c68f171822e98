package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockstep/lockstep/internal/proctest"
)

const cpProto = "checkpoint"

// TestCheckpointPrimaryKilled kills the primary of a three-node checkpoint
// group three times under 8 clients reading and writing through every
// node, restarting it each time. Every acknowledged write must survive
// (replies leave only once the checkpoint holding their state is on every
// backup), the history must be linearizable, and the replicas must end
// byte-identical.
func TestCheckpointPrimaryKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: several failovers with real processes")
	}
	c := startClusterWith(t, 3, cpProto)
	var mu sync.Mutex
	addrs := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, p := range c.procs {
			out = append(out, p.Addr)
		}
		return out
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("workload seed %d", seed)
	w := &workload{c: c, keys: 5, addrs: addrs}
	ctx, cancel := context.WithCancel(context.Background())
	wg := w.run(ctx, 8, seed)
	acks := startWriters(4, addrs)
	for round := range 3 {
		acks.waitProgress(t, 100, "unique writes before the kill")
		primary := c.status().byRole("primary")
		if primary == "" {
			t.Fatalf("round %d: no primary in %s", round, statusRoles(c.status()))
		}
		c.kill(primary)
		acks.waitProgress(t, 100, "unique writes after killing "+primary)
		mu.Lock()
		c.start(primary)
		mu.Unlock()
		c.waitMembers(3, 30*time.Second)
	}
	acked := acks.finish()
	cancel()
	wg.Wait()
	if w.acked.Load() < 200 {
		t.Fatalf("only %d workload writes acknowledged (last error %v)", w.acked.Load(), w.lastErr.Load())
	}
	c.waitIdentical("n1", "n2", "n3")
	checkAcked(t, c.procs[c.status().byRole("primary")].Addr, acked)
	checkLinearizable(t, &w.rec)
}

// TestCheckpointInfo checks that INFO reports the checkpoint settings and
// that many writes to one hot key cost little state transfer.
func TestCheckpointInfo(t *testing.T) {
	c := startClusterWith(t, 2, cpProto)
	primary := c.status().byRole("primary")
	rc := redis.NewClient(&redis.Options{Addr: c.procs[primary].Addr})
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pipe := rc.Pipeline()
	for i := range 2000 {
		pipe.Set(ctx, "hot", i, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	var info string
	proctest.Eventually(t, 10*time.Second, "checkpoints in INFO", func() bool {
		info, _ = rc.Info(ctx, "replication").Result()
		return strings.Contains(info, "lockstep_checkpoint_interval_ms:20") && infoInt(info, "lockstep_checkpoints") > 0
	})
	made, total := infoInt(info, "lockstep_checkpoints"), infoInt(info, "lockstep_checkpoint_bytes")
	t.Logf("2000 writes to one key: %d checkpoints, %d bytes", made, total)
	if total > made*200 {
		t.Fatalf("checkpoints of one hot key average %d bytes", total/made)
	}
	if v, err := redis.NewClient(&redis.Options{Addr: c.procs[c.status().byRole("backup")].Addr}).Get(ctx, "hot").Result(); err != nil || v != "1999" {
		t.Fatalf("GET hot through the backup: %q, %v", v, err)
	}
}

// infoInt reads an integer field of an INFO reply, or -1.
func infoInt(info, field string) int {
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n := 0
			for _, ch := range v {
				if ch < '0' || ch > '9' {
					return -1
				}
				n = n*10 + int(ch-'0')
			}
			return n
		}
	}
	return -1
}
