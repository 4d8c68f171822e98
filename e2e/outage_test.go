package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/internal/proctest"
)

// startDurableCluster starts a 3-node group running protocol on Pebble
// with --fsync always, each node on a data directory of its own that
// outlives its processes, and an embedded etcd on fixed ports and a
// directory of its own, so that the test can stop and restart it too.
func startDurableCluster(t *testing.T, protocol string) (*cluster, func() *coord.Embedded) {
	t.Helper()
	dataRoot, etcdDir := t.TempDir(), t.TempDir()
	cport, err1 := proctest.FreePort()
	pport, err2 := proctest.FreePort()
	if err1 != nil || err2 != nil {
		t.Fatalf("free ports: %v %v", err1, err2)
	}
	startEtcd := func() *coord.Embedded {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		e, err := coord.StartEmbedded(ctx, coord.EmbeddedConfig{Dir: etcdDir,
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", cport), PeerURL: fmt.Sprintf("http://127.0.0.1:%d", pport)})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	e := startEtcd()
	c := &cluster{t: t, etcd: e, endpoints: e.Endpoints()[0], size: 3, protocol: protocol,
		procs: map[string]*proctest.Proc{},
		extraArgs: func(name string) []string {
			return []string{"--storage", "pebble", "--fsync", "always", "--data-dir", filepath.Join(dataRoot, name)}
		}}
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpLogs()
		}
		for _, p := range c.procs {
			p.Kill()
		}
		c.etcd.Close()
	})
	for i := 1; i <= 3; i++ {
		c.start(nodeName(i))
	}
	c.waitMembers(3, 30*time.Second)
	return c, startEtcd
}

// killAll SIGKILLs every server at once.
func (c *cluster) killAll() {
	var wg sync.WaitGroup
	for _, p := range c.procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Kill()
		}()
	}
	wg.Wait()
}

// TestTotalOutageKeepsAcknowledgedWrites runs 8 clients against a durable
// 3-node group of each protocol, SIGKILLs every server at once, and starts
// them again on their data directories: the group must re-form by itself
// with every acknowledged write (the history, checked with porcupine per
// key, includes reads after the restart), and the replicas must end
// identical. With etcd, every server's coordinator, stopped and started
// again as well.
func TestTotalOutageKeepsAcknowledgedWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: real processes killed and restarted per protocol")
	}
	for _, proto := range []string{chainProto, pbProto, cpProto} {
		t.Run(proto, func(t *testing.T) { totalOutage(t, proto, false) })
	}
	t.Run("chain-and-etcd", func(t *testing.T) { totalOutage(t, chainProto, true) })
}

func totalOutage(t *testing.T, protocol string, etcdToo bool) {
	c, startEtcd := startDurableCluster(t, protocol)
	w, stop := startLoad(t, c, c.addrs, "writes before the outage")
	c.killAll()
	before := w.acked.Load()
	proctest.Eventually(t, 10*time.Second, "status to say whom the group waits for", func() bool {
		return strings.Contains(c.status().Down, "waiting for a restart on the data of")
	})
	t.Logf("status while down: %s", c.status().Down)
	if etcdToo {
		c.etcd.Close()
		c.etcd = startEtcd()
	}
	start := time.Now()
	for i := 1; i <= 3; i++ {
		c.start(nodeName(i))
	}
	proctest.Eventually(t, 60*time.Second, "writes after the restart", func() bool { return w.acked.Load() >= before+200 })
	t.Logf("%d writes acknowledged before the outage; the group served writes again %v after the restart",
		before, time.Since(start).Round(time.Millisecond))
	c.waitMembers(3, 60*time.Second)
	stop()
	c.waitIdentical("n1", "n2", "n3")
	checkLinearizable(t, &w.rec)
}

// TestCoordinatorOutage stops etcd for 30 s, far longer than the lease
// TTL, under 8 clients: the nodes must stop serving (no stale read, no
// split brain: the history stays linearizable), keep their data, and
// serve again on their own once etcd is back, with every acknowledged
// write.
func TestCoordinatorOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: a 30 s coordinator outage")
	}
	c, startEtcd := startDurableCluster(t, chainProto)
	w, stop := startLoad(t, c, c.addrs, "writes before the outage")
	c.etcd.Close()
	stopped := time.Now()
	time.Sleep(10 * time.Second) // the outage itself, not a wait for a state
	during := w.acked.Load()
	time.Sleep(20 * time.Second) // the rest of the outage
	if n := w.acked.Load() - during; n > 0 {
		t.Errorf("%d writes acknowledged between 10 s and 30 s into the outage, past every lease", n)
	}
	c.etcd = startEtcd()
	back := time.Now()
	proctest.Eventually(t, 60*time.Second, "writes after etcd returned", func() bool { return w.acked.Load() >= during+200 })
	t.Logf("etcd down %v; writes resumed %v after it returned", back.Sub(stopped).Round(time.Millisecond), time.Since(back).Round(time.Millisecond))
	for name, p := range c.procs {
		if p.Exited() {
			t.Errorf("%s exited during the outage", name)
		}
	}
	c.waitMembers(3, 60*time.Second)
	stop()
	c.waitIdentical("n1", "n2", "n3")
	checkLinearizable(t, &w.rec)
}

// TestRecoverWithoutALostMember: after a total outage one member's disk
// is gone for good. The group waits for it, says so, and `lockstep
// recover --yes` re-forms it from the others with every acknowledged
// write; the lost member then joins again on an empty directory.
func TestRecoverWithoutALostMember(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: real processes killed and restarted")
	}
	c, _ := startDurableCluster(t, pbProto)
	w, stop := startLoad(t, c, func() []string { return c.addrsOf("n1", "n2") }, "writes before the outage")
	c.killAll()
	before := w.acked.Load()
	c.start("n1")
	c.start("n2")
	proctest.Eventually(t, 10*time.Second, "status to say the group waits for n3", func() bool {
		return strings.Contains(c.status().Down, "the data of n3")
	})
	out, err := exec.Command(lockstepBin, "recover", "--etcd-endpoints", c.endpoints).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "left out, their data not back: n3") {
		t.Fatalf("recover without --yes: %v\n%s", err, out)
	}
	if out, err = exec.Command(lockstepBin, "recover", "--etcd-endpoints", c.endpoints, "--yes").CombinedOutput(); err != nil {
		t.Fatalf("recover --yes: %v\n%s", err, out)
	}
	t.Logf("recover: %s", out)
	proctest.Eventually(t, 30*time.Second, "writes after the recovery", func() bool { return w.acked.Load() >= before+200 })
	c.extraArgs = func(name string) []string {
		return []string{"--storage", "pebble", "--fsync", "always", "--data-dir", filepath.Join(t.TempDir(), name)}
	}
	c.start("n3") // on a new, empty directory
	c.waitMembers(3, 60*time.Second)
	stop()
	c.waitIdentical("n1", "n2", "n3")
	checkLinearizable(t, &w.rec)
}

// addrsOf returns the client addresses of the named nodes.
func (c *cluster) addrsOf(names ...string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(names))
	for _, n := range names {
		if p, ok := c.procs[n]; ok {
			out = append(out, p.Addr)
		}
	}
	return out
}

// TestRollingRestart restarts every member of a durable group in turn
// (SIGTERM, then start again on its data directory) under 8 clients, for
// chain and primary-backup replication: nothing acknowledged may be lost
// and the history must be linearizable. A clean stop keeps the member's
// state, so the restarted member must catch up from the retained log and
// install no full snapshot (INFO lockstep_snapshots_installed). It
// reports the longest write stall around each restart; docs/BENCHMARKS.md
// records them.
func TestRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: three restarts under load")
	}
	for _, protocol := range []string{chainProto, pbProto} {
		t.Run(protocol, func(t *testing.T) { rollingRestart(t, protocol) })
	}
}

func rollingRestart(t *testing.T, protocol string) {
	c, _ := startDurableCluster(t, protocol)
	w, stop := startLoad(t, c, c.addrs, "writes before the restarts")
	for i := 1; i <= 3; i++ {
		name := nodeName(i)
		stall := watchStall(&w.acked)
		if err := c.procs[name].Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := c.procs[name].Wait(wctx)
		wcancel()
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s did not stop on SIGTERM", name)
		}
		c.start(name)
		c.waitMembers(3, 60*time.Second)
		if log := c.procs[name].Log(); !strings.Contains(log, "keeping local state: it was all committed") {
			t.Errorf("%s did not keep the state of its clean stop:\n%s", name, log)
		}
		if _, err := os.Stat(filepath.Join(c.dataDirOf(name), "pebble.replaced")); !os.IsNotExist(err) {
			t.Errorf("%s set its state aside after a clean stop (%v)", name, err)
		}
		before := w.acked.Load()
		proctest.Eventually(t, 30*time.Second, "writes after restarting "+name, func() bool { return w.acked.Load() >= before+50 })
		snaps := infoField(t, c.procs[name].Addr, "lockstep_snapshots_installed")
		t.Logf("restart of %s: longest write stall %v, snapshots it installed: %s", name, stall().Round(time.Millisecond), snaps)
		if snaps != "0" {
			t.Errorf("%s installed %s snapshots after a clean stop; it should catch up from the retained log", name, snaps)
		}
	}
	stop()
	c.waitIdentical("n1", "n2", "n3")
	checkLinearizable(t, &w.rec)
}

// watchStall samples n every millisecond until the returned function is
// called, which reports the longest time n stood still.
func watchStall(n *atomic.Int64) func() time.Duration {
	done := make(chan time.Duration)
	stop := make(chan struct{})
	go func() {
		var longest time.Duration
		last, since := n.Load(), time.Now()
		tk := time.NewTicker(time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				done <- max(longest, time.Since(since))
				return
			case <-tk.C:
			}
			if v := n.Load(); v != last {
				longest = max(longest, time.Since(since))
				last, since = v, time.Now()
			}
		}
	}()
	return func() time.Duration { close(stop); return <-done }
}

// infoField reads one field of INFO replication from addr.
func infoField(t *testing.T, addr, field string) string {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := rc.Info(ctx, "replication").Result()
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return v
		}
	}
	return "?"
}

// startLoad runs 8 clients of a workload over 5 keys through addrs until
// stop (also called at cleanup; calling it twice is harmless), and returns
// once they have 200 writes acknowledged (what names that wait).
func startLoad(t *testing.T, c *cluster, addrs func() []string, what string) (*workload, func()) {
	t.Helper()
	w := &workload{c: c, keys: 5, addrs: addrs}
	ctx, cancel := context.WithCancel(context.Background())
	wg := w.run(ctx, 8, uint64(time.Now().UnixNano()))
	stop := func() {
		cancel()
		wg.Wait()
	}
	t.Cleanup(stop)
	proctest.Eventually(t, 30*time.Second, what, func() bool { return w.acked.Load() >= 200 })
	return w, stop
}

// dataDirOf is the --data-dir extraArgs gives name.
func (c *cluster) dataDirOf(name string) string {
	args := c.extraArgs(name)
	for i, a := range args {
		if a == "--data-dir" && i+1 < len(args) {
			return args[i+1]
		}
	}
	c.t.Fatalf("no --data-dir for %s", name)
	return ""
}
