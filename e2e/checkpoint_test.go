package e2e

import (
	"context"
	"strconv"
	"strings"
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
	addrs := c.addrs
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
		c.start(primary)
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

// TestCheckpointCutEarlyBySize: with a 10 s epoch and a 4 KiB bound on
// dirty state, a burst of 1 KB writes is checkpointed by size, many times
// before the epoch would end.
func TestCheckpointCutEarlyBySize(t *testing.T) {
	c := startClusterArgs(t, 2, cpProto, func(string) []string {
		return []string{"--checkpoint-interval", "10s", "--checkpoint-bytes", "4096"}
	})
	primary := c.status().byRole("primary")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info := redis.NewClient(&redis.Options{Addr: c.procs[primary].Addr})
	defer info.Close()
	before := -1
	proctest.Eventually(t, 5*time.Second, "INFO from the primary", func() bool {
		s, _ := info.Info(ctx, "replication").Result()
		before = infoInt(s, "lockstep_checkpoints")
		return before >= 0
	})
	// Forty clients write 1 KB each. Each reply waits for the checkpoint
	// holding its write; with the 10 s interval far off, only size cuts
	// can make checkpoints now. (The last writes, under the bound, may
	// well wait for the interval.)
	start := time.Now()
	for i := range 40 {
		go func() {
			w := redis.NewClient(&redis.Options{Addr: c.procs[primary].Addr, ReadTimeout: 20 * time.Second})
			defer w.Close()
			_ = w.Set(ctx, "big"+strconv.Itoa(i), strings.Repeat("v", 1000), 0).Err()
		}()
	}
	var made, bytes int
	proctest.Eventually(t, 5*time.Second, "most of 40 KB of writes checkpointed by size", func() bool {
		s, _ := info.Info(ctx, "replication").Result()
		made, bytes = infoInt(s, "lockstep_checkpoints")-before, infoInt(s, "lockstep_checkpoint_bytes")
		return made >= 3 && bytes >= 30*1000
	})
	t.Logf("%d bytes in %d checkpoints within %v of a 10 s epoch", bytes, made, time.Since(start).Round(time.Millisecond))
}

// TestCheckpointReadsOfCommittedStateDoNotWait: with 2 s epochs, a read of
// a key whose last write is on every backup is answered at once, while a
// write in the open epoch still waits for its checkpoint; a read of that
// key then sees it.
func TestCheckpointReadsOfCommittedStateDoNotWait(t *testing.T) {
	c := startClusterArgs(t, 2, cpProto, func(string) []string {
		return []string{"--checkpoint-interval", "2s"}
	})
	addr := c.procs[c.status().byRole("primary")].Addr
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rc := redis.NewClient(&redis.Options{Addr: addr, ReadTimeout: 20 * time.Second, PoolSize: 4})
	defer rc.Close()
	if err := rc.Set(ctx, "cold", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// An epoch may end between the write and the read; then try again.
	for attempt := 0; ; attempt++ {
		if attempt == 3 {
			t.Fatal("three epochs ended right between a write and a read")
		}
		hot := "hot" + strconv.Itoa(attempt)
		pending := make(chan error, 1)
		go func() { pending <- rc.Set(ctx, hot, "2", 0).Err() }()
		proctest.Eventually(t, 5*time.Second, "the write to "+hot+" executed", func() bool {
			info, _ := rc.Info(ctx, "replication").Result()
			return infoInt(info, "lockstep_dirty_bytes") > 0
		})
		start := time.Now()
		v, err := rc.Get(ctx, "cold").Result()
		took := time.Since(start)
		if err != nil || v != "1" {
			t.Fatalf("GET cold: %q, %v", v, err)
		}
		select {
		case <-pending:
			continue // answered already: its epoch ended meanwhile
		default:
		}
		if took > 500*time.Millisecond {
			t.Fatalf("a read of committed state waited %v for the open epoch", took)
		}
		if v, err := rc.Get(ctx, hot).Result(); err != nil || v != "2" {
			t.Fatalf("GET %s: %q, %v", hot, v, err)
		}
		if err := <-pending; err != nil {
			t.Fatal(err)
		}
		t.Logf("a read of committed state took %v while a write waited for its epoch", took.Round(time.Microsecond))
		return
	}
}
