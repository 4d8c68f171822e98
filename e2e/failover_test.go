package e2e

import (
	"cmp"
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
// LOCKSTEP_FAILOVER_MODE says how the death is found:
//
//	watchdog  bare server processes with default flags: each one's
//	          watchdog fences it when it dies (the default)
//	lease     bare servers with --fence-on-exit=false: the lease expires
//	up        the nodes of `lockstep up`, which fences a child that exits
func TestMeasureFailover(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("LOCKSTEP_FAILOVER_RUNS"))
	if runs <= 0 {
		t.Skip("set LOCKSTEP_FAILOVER_RUNS=N to measure failover time")
	}
	proto := os.Getenv("LOCKSTEP_FAILOVER_PROTOCOL")
	mode := cmp.Or(os.Getenv("LOCKSTEP_FAILOVER_MODE"), "watchdog")
	if mode != "watchdog" && mode != "lease" && mode != "up" {
		t.Fatalf("LOCKSTEP_FAILOVER_MODE=%s: want watchdog, lease or up", mode)
	}
	var times []time.Duration
	for range runs {
		times = append(times, measureOneFailover(t, proto, mode))
	}
	slices.Sort(times)
	t.Logf("%s, found by %s: SIGKILL of the writer -> first successful write, %d runs: min %v, median %v, max %v, all %v",
		cmp.Or(proto, chainProto), mode, runs, times[0], times[len(times)/2], times[len(times)-1], times)
}

// failoverTarget starts a 3-node group and returns the pid of the node
// that orders writes and the client address of one that survives it.
func failoverTarget(t *testing.T, proto, mode string) (pid int, addr string, stop func()) {
	writer, other := "head", "tail"
	if proto == pbProto || proto == cpProto {
		writer, other = "primary", "backup"
	}
	if mode == "up" {
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
	c := startClusterArgs(t, 3, proto, func(string) []string {
		if mode == "lease" {
			return []string{"--fence-on-exit=false"}
		}
		return nil
	})
	st := c.status()
	return c.procs[st.byRole(writer)].Pid(), c.procs[st.byRole(other)].Addr, func() {
		for _, p := range c.procs {
			p.Kill()
		}
	}
}

func measureOneFailover(t *testing.T, proto, mode string) time.Duration {
	pid, addr, stop := failoverTarget(t, proto, mode)
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
