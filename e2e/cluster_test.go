package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/internal/proctest"
)

// cluster is an embedded etcd in the test process plus real lockstep
// server processes that join it, as `lockstep up` would start them.
type cluster struct {
	t         *testing.T
	etcd      *coord.Embedded
	endpoints string
	size      int    // --bootstrap-expect
	protocol  string // --protocol, "" for the default
	// extraArgs, if set, adds server flags for the node called name.
	extraArgs func(name string) []string
	// mu guards procs against clients reading addresses (addrs) while a
	// test restarts a node.
	mu    sync.Mutex
	procs map[string]*proctest.Proc
}

func startCluster(t *testing.T, size int) *cluster {
	t.Helper()
	return startClusterWith(t, size, "")
}

// startClusterWith starts size nodes of a group running protocol and
// waits until all are members.
func startClusterWith(t *testing.T, size int, protocol string) *cluster {
	t.Helper()
	return startClusterArgs(t, size, protocol, nil)
}

// startClusterArgs is startClusterWith with extra server flags per node.
func startClusterArgs(t *testing.T, size int, protocol string, extra func(name string) []string) *cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := coord.StartEmbedded(ctx, coord.EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, etcd: e, endpoints: e.Endpoints()[0], size: size, protocol: protocol,
		extraArgs: extra, procs: map[string]*proctest.Proc{}}
	t.Cleanup(func() {
		for _, p := range c.procs {
			p.Kill()
		}
		e.Close()
	})
	for i := 1; i <= size; i++ {
		c.start(nodeName(i))
	}
	c.waitMembers(size, 30*time.Second)
	return c
}

func nodeName(i int) string { return "n" + string(rune('0'+i)) }

// start runs (or restarts, as a new incarnation) the node called name.
func (c *cluster) start(name string) *proctest.Proc {
	c.t.Helper()
	args := []string{"--name", name, "--listen", "127.0.0.1:0",
		"--etcd-endpoints", c.endpoints, "--storage", "memory", "--bootstrap-expect", strconv.Itoa(c.size),
		"--lease-ttl", "2s", "--log-level", "info"}
	if c.protocol != "" {
		args = append(args, "--protocol", c.protocol)
	}
	if c.extraArgs != nil {
		args = append(args, c.extraArgs(name)...)
	}
	p := proctest.StartLockstep(c.t, lockstepBin, args...)
	c.mu.Lock()
	c.procs[name] = p
	c.mu.Unlock()
	return p
}

// addrs returns every node's client address, for clients that move to
// another node when theirs fails; it may be called while nodes restart.
func (c *cluster) addrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.procs))
	for _, p := range c.procs {
		out = append(out, p.Addr)
	}
	return out
}

// freeze stops name with SIGSTOP: it can no longer renew its lease, as if
// cut off from etcd, while its clients stay connected.
func (c *cluster) freeze(name string) {
	c.t.Helper()
	p := c.procs[name]
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		c.t.Fatal(err)
	}
	proctest.Eventually(c.t, 5*time.Second, name+" to be stopped", func() bool { return proctest.Stopped(p.Pid()) })
}

// checkNoStaleRead reads key through rc, a client of a thawed node that
// lost its role, until it refuses: every answer must be want.
func checkNoStaleRead(t *testing.T, ctx context.Context, rc *redis.Client, key, want, who string) {
	t.Helper()
	for answered := 0; answered < 20; answered++ {
		v, err := rc.Get(ctx, key).Result()
		if err != nil {
			// Refused or closed: it noticed its lease was gone.
			t.Logf("thawed %s: %v after %d answers", who, err, answered)
			return
		}
		if v != want {
			t.Fatalf("thawed %s answered %q, a stale read", who, v)
		}
	}
}

func (c *cluster) kill(name string) {
	c.procs[name].Kill()
}

// status runs `lockstep status --json` against the cluster's etcd.
func (c *cluster) status() ClusterStatus {
	c.t.Helper()
	out, err := exec.Command(lockstepBin, "status", "--etcd-endpoints", c.endpoints, "--json").Output()
	if err != nil {
		c.t.Fatalf("lockstep status: %v", err)
	}
	var st ClusterStatus
	if err := json.Unmarshal(out, &st); err != nil {
		c.t.Fatalf("lockstep status --json: %v\n%s", err, out)
	}
	return st
}

// ClusterStatus mirrors `lockstep status --json`.
type ClusterStatus struct {
	Epoch    uint64    `json:"epoch"`
	Protocol string    `json:"protocol"`
	Nodes    []NodeRow `json:"nodes"`
	Down     string    `json:"down"`
	Paused   string    `json:"paused"`
}

// NodeRow is one node of `lockstep status --json`.
type NodeRow struct {
	Name       string `json:"name"`
	Pid        int    `json:"pid"`
	ClientAddr string `json:"client_addr"`
	Role       string `json:"role"`
	State      string `json:"state"`
	Applied    uint64 `json:"applied"`
	Complete   bool   `json:"complete"`
}

// byRole returns the name of the node with role, or "".
func (s ClusterStatus) byRole(role string) string {
	for _, n := range s.Nodes {
		if n.Role == role {
			return n.Name
		}
	}
	return ""
}

// serving counts configured members (not joining, not down).
func (s ClusterStatus) serving() int {
	n := 0
	for _, nd := range s.Nodes {
		switch nd.Role {
		case "head", "middle", "tail", "primary", "backup":
			n++
		}
	}
	return n
}

// node returns the status of the node called name, if listed.
func (s ClusterStatus) node(name string) (NodeRow, bool) {
	for _, n := range s.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return NodeRow{}, false
}

func (c *cluster) waitMembers(n int, timeout time.Duration) ClusterStatus {
	c.t.Helper()
	var st ClusterStatus
	proctest.Eventually(c.t, timeout, strconv.Itoa(n)+" serving members", func() bool {
		st = c.status()
		return st.serving() == n && !strings.Contains(statusRoles(st), "down")
	})
	return st
}

func statusRoles(st ClusterStatus) string {
	var b strings.Builder
	for _, n := range st.Nodes {
		b.WriteString(n.Name + "=" + n.Role + " ")
	}
	return b.String()
}

// dumpLogs writes every node's log to the test log, for a failure.
func (c *cluster) dumpLogs() {
	for name, p := range c.procs {
		c.t.Logf("---- %s ----\n%s", name, p.Log())
	}
}

// TestReplicaKeepsStandaloneData points a cluster replica at a data
// directory written by a standalone node: rather than discard that data
// (a restarting replica rebuilds from its peers), it refuses to start.
func TestReplicaKeepsStandaloneData(t *testing.T) {
	dir := t.TempDir()
	ls := proctest.StartLockstep(t, lockstepBin, "--listen", "127.0.0.1:0", "--data-dir", dir)
	rc := redis.NewClient(&redis.Options{Addr: ls.Addr})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := rc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if err := ls.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := ls.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	e, err := coord.StartEmbedded(ctx, coord.EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	out, err := exec.CommandContext(ctx, lockstepBin, "server", "--name", "n1", "--listen", "127.0.0.1:0",
		"--etcd-endpoints", e.Endpoints()[0], "--data-dir", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "standalone node's data") {
		t.Fatalf("want a refusal, got %v:\n%s", err, out)
	}
	ls2 := proctest.StartLockstep(t, lockstepBin, "--listen", "127.0.0.1:0", "--data-dir", dir)
	rc2 := redis.NewClient(&redis.Options{Addr: ls2.Addr})
	defer rc2.Close()
	if v, err := rc2.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("standalone data after the refusal: %q, %v", v, err)
	}
}
