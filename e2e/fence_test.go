package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockstep/lockstep/internal/proctest"
)

// The tests here run with a 30 s lease, so a failover within their 10 s
// deadlines can only come from fencing, never from the lease expiring.
const fenceTestTTL = "30s"

// startFenceCluster starts a 3-node chain whose nodes hold fenceTestTTL
// leases, plus extra server flags.
func startFenceCluster(t *testing.T, extra ...string) *cluster {
	t.Helper()
	return startClusterArgs(t, 3, "", func(string) []string {
		return append([]string{"--lease-ttl", fenceTestTTL}, extra...)
	})
}

// fenceClient is a client of addr that waits out a failover: no retries
// of its own, and replies awaited longer than ctx, the tests' 10 s.
func fenceClient(t *testing.T, addr string) (*redis.Client, context.Context) {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ReadTimeout: 15 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(func() {
		cancel()
		rc.Close()
	})
	return rc, ctx
}

// TestUpFencesAKilledNode: `lockstep up` sees its child die and fences it,
// so the chain loses its head and takes writes again long before the
// head's lease could expire; the write acknowledged before the kill is
// still there. The head's watchdog is killed first, so that only up can
// have fenced it.
func TestUpFencesAKilledNode(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: runs a whole cluster")
	}
	u := startUp(t, "--lease-ttl", fenceTestTTL)
	st := upStatus(t, u.dir)
	var head NodeRow
	for _, n := range st.Nodes {
		if n.Role == "head" {
			head = n
		}
	}
	tail := st.Nodes[len(st.Nodes)-1]
	rc, ctx := fenceClient(t, tail.ClientAddr)
	if err := rc.Set(ctx, "k", "before", 0).Err(); err != nil {
		t.Fatal(err)
	}
	watchdogs := proctest.Children(head.Pid)
	if len(watchdogs) != 1 {
		t.Fatalf("head %d has children %v, want its one watchdog", head.Pid, watchdogs)
	}
	for _, pid := range []int{watchdogs[0], head.Pid} {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	if err := rc.Set(ctx, "k2", "after", 0).Err(); err != nil {
		t.Fatalf("no write within 10 s of the head's SIGKILL (lease %s): %v\n%s", fenceTestTTL, err, u.output())
	}
	if v, err := rc.Get(ctx, "k").Result(); err != nil || v != "before" {
		t.Fatalf("GET k = %q, %v; want the write acknowledged before the kill", v, err)
	}
	if out := u.output(); !strings.Contains(out, head.Name+" exited: signal: killed (fenced") {
		t.Errorf("up did not report fencing %s:\n%s", head.Name, out)
	}
	if s := upStatus(t, u.dir); s.byRole("head") == head.Name || s.serving() != 2 {
		t.Errorf("after the fence: %s", statusRoles(s))
	}
}

// TestFenceCommand is the production path: a supervisor runs `lockstep
// fence` once its server process is gone. fence refuses a live node (its
// pid still runs on this host), does nothing for another pid, and fails
// the dead head over at once. The
// servers run without their watchdogs, which would fence first.
func TestFenceCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: runs a whole cluster")
	}
	c := startFenceCluster(t, "--fence-on-exit=false")
	st := c.status()
	head, tail := st.byRole("head"), st.byRole("tail")
	fence := func(args ...string) (string, error) {
		out, err := exec.Command(lockstepBin, append([]string{"fence", "--etcd-endpoints", c.endpoints}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := fence("--name", tail); err == nil || !strings.Contains(out, fmt.Sprintf("pid %d is still running", c.procs[tail].Pid())) {
		t.Fatalf("fence of a live node: %v\n%s", err, out)
	}
	if _, err := fence(); err == nil {
		t.Fatal("fence without --name succeeded")
	}
	pid := c.procs[head].Pid()
	c.kill(head)
	if out, err := fence("--name", head, "--pid", fmt.Sprint(pid+1)); err != nil || !strings.Contains(out, "nothing to fence") {
		t.Fatalf("fence with another pid: %v\n%s", err, out)
	}
	if out, err := fence("--name", head, "--pid", fmt.Sprint(pid)); err != nil || !strings.Contains(out, "fenced") {
		t.Fatalf("fence of the dead head: %v\n%s", err, out)
	}
	rc, ctx := fenceClient(t, c.procs[tail].Addr)
	if err := rc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("no write within 10 s of fencing the head (lease %s): %v", fenceTestTTL, err)
	}
	if s := c.status(); s.byRole("head") == head || s.serving() != 2 {
		t.Errorf("after the fence: %s", statusRoles(s))
	}
}

// TestWatchdogFencesACrashedServer: a bare `lockstep server`, with no
// supervisor, is fenced by its own watchdog the moment it is SIGKILLed,
// so the chain takes writes again long before its lease could expire. A
// frozen server (SIGSTOP) is not dead, and is left to its lease: the
// partition tests cover that.
func TestWatchdogFencesACrashedServer(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: runs a whole cluster")
	}
	c := startFenceCluster(t)
	st := c.status()
	head, tail := st.byRole("head"), st.byRole("tail")
	rc, ctx := fenceClient(t, c.procs[tail].Addr)
	if err := rc.Set(ctx, "k", "before", 0).Err(); err != nil {
		t.Fatal(err)
	}
	c.kill(head)
	if err := rc.Set(ctx, "k2", "after", 0).Err(); err != nil {
		t.Fatalf("no write within 10 s of the head's SIGKILL (lease %s): %v\n%s", fenceTestTTL, err, c.procs[head].Log())
	}
	if v, err := rc.Get(ctx, "k").Result(); err != nil || v != "before" {
		t.Fatalf("GET k = %q, %v; want the write acknowledged before the kill", v, err)
	}
	if s := c.status(); s.byRole("head") == head || s.serving() != 2 {
		t.Errorf("after the crash: %s", statusRoles(s))
	}
}

// TestWatchdogLeavesAFrozenServerToItsLease: a frozen process is not dead,
// and its watchdog must not fence it (a live node fenced early could
// answer reads its group has moved past). With a 30 s lease, a tail frozen
// for 3 s stays a member, and serves again once thawed.
func TestWatchdogLeavesAFrozenServerToItsLease(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: runs a whole cluster")
	}
	c := startFenceCluster(t)
	tail := c.status().byRole("tail")
	c.freeze(tail)
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			_ = c.procs[tail].Signal(syscall.SIGCONT)
		}
	}
	defer thaw()
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		if st := c.status(); st.byRole("tail") != tail {
			t.Fatalf("a frozen (not dead) tail was removed before its lease could expire: %s", statusRoles(st))
		}
	}
	thaw()
	rc, ctx := fenceClient(t, c.procs[tail].Addr)
	if err := rc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("the thawed tail does not serve: %v", err)
	}
	if v, err := rc.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET through the thawed tail = %q, %v", v, err)
	}
}
