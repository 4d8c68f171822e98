package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockstep/lockstep/internal/proctest"
)

// TestPebbleSIGKILLKeepsAcknowledgedWrites kills a node with SIGKILL while
// eight clients stream writes under --fsync always, restarts it on the same
// data directory, and reads back every write that was acknowledged.
func TestPebbleSIGKILLKeepsAcknowledgedWrites(t *testing.T) {
	dir := t.TempDir()
	ls := proctest.StartLockstep(t, lockstepBin, "--listen", "127.0.0.1:0", "--data-dir", dir, "--fsync", "always")
	c := redis.NewClient(&redis.Options{Addr: ls.Addr, MaxRetries: -1, PoolSize: 16})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	const writers = 8
	acked := make([]map[string]string, writers)
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for w := range writers {
		acked[w] = map[string]string{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				// Overwrites: key w:i%50 ends with the latest acked value.
				k, v := fmt.Sprintf("w%d:%d", w, i%50), fmt.Sprintf("v%d", i)
				if err := c.Set(ctx, k, v, 0).Err(); err != nil {
					return // the kill: outcome unknown, not acknowledged
				}
				acked[w][k] = v
				mu.Lock()
				total++
				mu.Unlock()
			}
		}()
	}
	proctest.Eventually(t, 30*time.Second, "2000 acknowledged writes", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return total >= 2000
	})
	ls.Kill()
	wg.Wait()
	c.Close()

	ls2 := proctest.StartLockstep(t, lockstepBin, "--listen", "127.0.0.1:0", "--data-dir", dir)
	c2 := redis.NewClient(&redis.Options{Addr: ls2.Addr})
	defer c2.Close()
	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer rcancel()
	checked := 0
	for w := range writers {
		for k, v := range acked[w] {
			got, err := c2.Get(rctx, k).Result()
			// The write in flight at the kill may have landed too: it is
			// the acked value's successor, never an older one.
			if err != nil || (got != v && !isSuccessor(got, v)) {
				t.Errorf("after restart %s = %q (%v), last acknowledged %q", k, got, err, v)
			}
			checked++
		}
	}
	t.Logf("%d acknowledged writes before SIGKILL, %d keys checked after restart", total, checked)
}

// isSuccessor reports whether got is the value the writer would have
// written to the same key next (50 writes later).
func isSuccessor(got, v string) bool {
	var g, w int
	if _, err := fmt.Sscanf(got, "v%d", &g); err != nil {
		return false
	}
	if _, err := fmt.Sscanf(v, "v%d", &w); err != nil {
		return false
	}
	return g == w+50
}

// TestGracefulShutdownFlushes stops a node with SIGTERM under --fsync none
// (so nothing was flushed per write) and checks that it exits cleanly and
// that every acknowledged write is there after a restart.
func TestGracefulShutdownFlushes(t *testing.T) {
	dir := t.TempDir()
	ls := proctest.StartLockstep(t, lockstepBin, "--listen", "127.0.0.1:0", "--data-dir", dir, "--fsync", "none")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: ls.Addr})
	for i := range 500 {
		if err := c.Set(ctx, fmt.Sprint("k", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	if err := ls.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := ls.Wait(ctx); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, ls.Log())
	}
	ls2 := proctest.StartLockstep(t, lockstepBin, "--listen", "127.0.0.1:0", "--data-dir", dir)
	c2 := redis.NewClient(&redis.Options{Addr: ls2.Addr})
	defer c2.Close()
	if n := c2.DBSize(ctx).Val(); n != 500 {
		t.Fatalf("DBSIZE after restart = %d, want 500", n)
	}
}

// TestWrongClusterRefused points a node at a data directory written by
// another cluster: it must refuse to start and say why.
func TestWrongClusterRefused(t *testing.T) {
	dir := t.TempDir()
	ls := proctest.StartLockstep(t, lockstepBin, "--listen", "127.0.0.1:0", "--data-dir", dir, "--cluster-id", "alpha")
	if err := ls.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ls.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, lockstepBin, "server", "--listen", "127.0.0.1:0", "--data-dir", dir, "--cluster-id", "beta").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another cluster") {
		t.Fatalf("want a wrong-cluster error, got %v:\n%s", err, out)
	}
}

// TestBadFlags checks that every bad flag value is refused with a message
// that names the flag, before anything is opened.
func TestBadFlags(t *testing.T) {
	cases := [][]string{
		{"--storage", "rocks"}, {"--fsync", "sometimes"}, {"--listen", "nope"},
		{"--max-clients", "0"}, {"--proto-max-bulk-len", "huge"}, {"--log-level", "loud"}, {"--no-such-flag"},
		{"--log-retention", "lots", "--etcd-endpoints", "http://127.0.0.1:1", "--name", "n1"},
		{"--requirepass-file", "/nonexistent/pw"}, {"--requirepass-file", "/dev/null", "--requirepass", "x"},
	}
	for _, args := range cases {
		out, err := exec.Command(lockstepBin, append([]string{"server", "--data-dir", t.TempDir()}, args...)...).CombinedOutput()
		if err == nil {
			t.Errorf("%v: accepted", args)
			continue
		}
		if !strings.Contains(string(out), strings.TrimPrefix(args[0], "--")) {
			t.Errorf("%v: message does not name the flag: %s", args, out)
		}
	}
	out, err := exec.Command(lockstepBin, "server", "--help").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"--listen", "--data-dir", "--storage", "--fsync", "--requirepass", "--admin-addr", "--max-clients", "--proto-max-bulk-len"} {
		if !strings.Contains(string(out), flag) {
			t.Errorf("server --help does not explain %s", flag)
		}
	}
}
