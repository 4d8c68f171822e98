package e2e

import (
	"context"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestMeasureFailover measures, with default settings, the time from
// SIGKILL of the head to the first write that succeeds afterwards, as a
// client connected to a surviving node sees it. It is a measurement, not
// a check, so it runs only when asked:
//
//	LOCKSTEP_FAILOVER_RUNS=5 go test ./e2e -run TestMeasureFailover -v
//
// LOCKSTEP_FAILOVER_PROTOCOL=primary-backup measures the kill of a
// primary instead, with the client on a backup.
//
// The nodes are bare processes, so the dead node is found by its lease
// expiring. LOCKSTEP_FAILOVER_SUPERVISED=1 runs them under `lockstep up`
// instead, which fences a node as soon as its process exits.
func TestMeasureFailover(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("LOCKSTEP_FAILOVER_RUNS"))
	if runs <= 0 {
		t.Skip("set LOCKSTEP_FAILOVER_RUNS=N to measure failover time")
	}
	proto := os.Getenv("LOCKSTEP_FAILOVER_PROTOCOL")
	supervised := os.Getenv("LOCKSTEP_FAILOVER_SUPERVISED") == "1"
	var times []time.Duration
	for range runs {
		times = append(times, measureOneFailover(t, proto, supervised))
	}
	slices.Sort(times)
	t.Logf("%s (supervised %v): SIGKILL of the writer -> first successful write, %d runs: min %v, median %v, max %v, all %v",
		proto, supervised, runs, times[0], times[len(times)/2], times[len(times)-1], times)
}

// failoverTarget starts a 3-node group and returns the pid of the node
// that orders writes and the client address of one that survives it.
func failoverTarget(t *testing.T, proto string, supervised bool) (pid int, addr string, stop func()) {
	writer, other := "head", "tail"
	if proto == pbProto || proto == cpProto {
		writer, other = "primary", "backup"
	}
	if supervised {
		args := []string{}
		if proto != "" {
			args = append(args, "--protocol", proto)
		}
		u := startUp(t, args...)
		st := upStatus(t, u.dir)
		w, _ := st.node(st.byRole(writer))
		o, _ := st.node(st.byRole(other))
		return w.Pid, o.ClientAddr, func() {}
	}
	c := startClusterWith(t, 3, proto)
	st := c.status()
	return c.procs[st.byRole(writer)].Pid(), c.procs[st.byRole(other)].Addr, func() {
		for _, p := range c.procs {
			p.Kill()
		}
	}
}

func measureOneFailover(t *testing.T, proto string, supervised bool) time.Duration {
	pid, addr, stop := failoverTarget(t, proto, supervised)
	defer stop()
	rc := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ReadTimeout: 20 * time.Second})
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := rc.Set(ctx, "warm", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if err := rc.Set(ctx, "after", strconv.Itoa(i), 0).Err(); err == nil {
			d := time.Since(killed)
			t.Logf("failover: first write %v after SIGKILL of pid %d", d.Round(time.Millisecond), pid)
			return d
		}
		if ctx.Err() != nil {
			t.Fatal("no write succeeded within 60s of the kill")
		}
	}
}
