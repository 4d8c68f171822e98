package e2e

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockstep/lockstep/internal/proctest"
)

func hostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// TestRedisCLI runs redis-cli as a user would, one command per invocation
// and a piped batch, and checks its printed output.
func TestRedisCLI(t *testing.T) {
	cli := proctest.NeedTool(t, "redis-cli", "redis-tools")
	ls := proctest.StartLockstep(t, lockstepBin, "--listen", "127.0.0.1:0", "--storage", "memory")
	h, p := hostPort(t, ls.Addr)
	run := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(cli, append([]string{"-h", h, "-p", p}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"set", "k", "v"}, "OK"},
		{[]string{"get", "k"}, "v"},
		{[]string{"get", "missing"}, ""},
		{[]string{"incr", "k"}, "ERR value is not an integer or out of range"},
		{[]string{"incrby", "n", "5"}, "5"},
		{[]string{"mget", "k", "n", "x"}, "v\n5\n"},
		{[]string{"exists", "k", "n", "x"}, "2"},
		{[]string{"nosuch", "a"}, "ERR unknown command 'nosuch', with args beginning with: 'a'"},
		{[]string{"ping"}, "PONG"},
	}
	for _, c := range cases {
		if got := run("", c.args...); got != strings.TrimSpace(c.want) {
			t.Errorf("redis-cli %v = %q, want %q", c.args, got, c.want)
		}
	}
	if got := run("set a 1\nset b 2\ndbsize\n"); got != "OK\nOK\n4" {
		t.Errorf("piped batch = %q", got)
	}
	if got := run("", "--scan", "--pattern", "*"); len(strings.Fields(got)) != 4 {
		t.Errorf("redis-cli --scan = %q, want 4 keys", got)
	}
	if got := run("", "info", "server"); !strings.Contains(got, "redis_version:") {
		t.Errorf("info server = %q", got)
	}
}

// TestRedisBenchmark runs redis-benchmark's SET, GET, INCR and MSET tests,
// plain and pipelined, and requires zero errors. INCR hits one counter key,
// so its final value proves that every increment was applied exactly once.
func TestRedisBenchmark(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: runs 1.6M requests")
	}
	bench := proctest.NeedTool(t, "redis-benchmark", "redis-tools")
	for _, pebble := range []bool{false, true} {
		args := []string{"--listen", "127.0.0.1:0", "--storage", "memory"}
		if pebble {
			args = []string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}
		}
		ls := proctest.StartLockstep(t, lockstepBin, args...)
		h, p := hostPort(t, ls.Addr)
		c := redis.NewClient(&redis.Options{Addr: ls.Addr})
		defer c.Close()
		var want int64
		for _, pipe := range []string{"1", "16"} {
			const n = 200000
			cmd := exec.Command(bench, "-h", h, "-p", p, "-t", "set,get,incr,mset", "-n", fmt.Sprint(n), "-c", "50", "-P", pipe, "-q")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("redis-benchmark -P %s: %v\n%s", pipe, err, out)
			}
			t.Logf("pebble=%v -P %s:\n%s", pebble, pipe, out)
			if strings.Contains(strings.ToLower(string(out)), "error") {
				t.Fatalf("redis-benchmark reported errors:\n%s", out)
			}
			want += n
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			got, err := c.Get(ctx, "counter:__rand_int__").Int64()
			cancel()
			if err != nil || got != want {
				t.Fatalf("counter = %d (%v), want %d", got, err, want)
			}
		}
	}
}
