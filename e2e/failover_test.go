package e2e

import (
	"context"
	"os"
	"slices"
	"strconv"
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
func TestMeasureFailover(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("LOCKSTEP_FAILOVER_RUNS"))
	if runs <= 0 {
		t.Skip("set LOCKSTEP_FAILOVER_RUNS=N to measure failover time")
	}
	proto := os.Getenv("LOCKSTEP_FAILOVER_PROTOCOL")
	var times []time.Duration
	for range runs {
		times = append(times, measureOneFailover(t, proto))
	}
	slices.Sort(times)
	t.Logf("%s: SIGKILL of the writer -> first successful write, %d runs: min %v, median %v, max %v, all %v",
		proto, runs, times[0], times[len(times)/2], times[len(times)-1], times)
}

func measureOneFailover(t *testing.T, proto string) time.Duration {
	c := startClusterWith(t, 3, proto)
	st := c.status()
	head, tail := st.byRole("head"), st.byRole("tail")
	if proto == pbProto || proto == cpProto {
		head, tail = st.byRole("primary"), st.byRole("backup")
	}
	rc := redis.NewClient(&redis.Options{Addr: c.procs[tail].Addr, MaxRetries: -1, ReadTimeout: 20 * time.Second})
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := rc.Set(ctx, "warm", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	c.kill(head)
	for i := 0; ; i++ {
		if err := rc.Set(ctx, "after", strconv.Itoa(i), 0).Err(); err == nil {
			d := time.Since(killed)
			t.Logf("failover: first write %v after SIGKILL of %s", d.Round(time.Millisecond), head)
			for _, p := range c.procs {
				p.Kill()
			}
			return d
		}
		if ctx.Err() != nil {
			t.Fatal("no write succeeded within 60s of the kill")
		}
	}
}
