package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockstep/lockstep/internal/proctest"
)

// freeRun finds n consecutive free ports, for `lockstep up --base-port`.
func freeRun(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		base, err := proctest.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if base+n > 65000 {
			continue
		}
		ok := true
		for p := base; p < base+n && ok; p++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				continue
			}
			ln.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no run of free ports")
	return 0
}

// upCluster is a cluster run by `lockstep up`, with its output captured.
type upCluster struct {
	dir  string
	base int    // node i's client port is base+i-1
	stop func() // SIGINT, then wait for 'up' to exit

	mu  sync.Mutex
	out strings.Builder
}

// output is what `lockstep up` printed so far.
func (u *upCluster) output() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.out.String()
}

// startUp runs `lockstep up` with args on free ports until its ready line,
// and stops it with SIGINT at cleanup.
func startUp(t *testing.T, args ...string) *upCluster {
	t.Helper()
	u := startUpIn(t, t.TempDir()+"/cluster", freeRun(t, 3), args...)
	t.Cleanup(u.stop)
	return u
}

// startUpIn runs `lockstep up` in dir on base until its ready line; the
// caller stops it (stop).
func startUpIn(t *testing.T, dir string, base int, args ...string) *upCluster {
	t.Helper()
	u := &upCluster{dir: dir, base: base}
	up := exec.Command(lockstepBin, append([]string{"up", "--dir", u.dir, "--base-port", fmt.Sprint(u.base)}, args...)...)
	stdout, err := up.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	u.stop = func() {
		_ = up.Process.Signal(syscall.SIGINT)
		_ = up.Wait()
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			u.mu.Lock()
			u.out.WriteString(sc.Text() + "\n")
			u.mu.Unlock()
			if strings.HasPrefix(sc.Text(), "ready") {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		u.stop()
		t.Fatalf("no ready line:\n%s", u.output())
	}
	return u
}

// TestUpQuickStart follows the README: `lockstep up`, a write and a read
// through different nodes, `lockstep status`, SIGKILL of a node, and with
// --restart-after the killed node comes back, rejoins and holds the data.
func TestUpQuickStart(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: runs a whole cluster")
	}
	u := startUp(t, "--restart-after", "300ms")
	dir, base := u.dir, u.base
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	first := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", base)})
	last := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", base+2)})
	defer first.Close()
	defer last.Close()
	if err := first.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := last.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET through another node = %q, %v", v, err)
	}

	st := upStatus(t, dir)
	tail := st.Nodes[len(st.Nodes)-1]
	if tail.Role != "tail" {
		t.Fatalf("status: %+v", st)
	}
	if err := syscall.Kill(tail.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 60*time.Second, "the killed node to rejoin as a member", func() bool {
		s := upStatus(t, dir)
		for _, n := range s.Nodes {
			if n.Name == tail.Name && n.Pid != tail.Pid && (n.Role == "tail" || n.Role == "middle" || n.Role == "head") {
				return s.serving() == 3
			}
		}
		return false
	})
	back := redis.NewClient(&redis.Options{Addr: tail.ClientAddr})
	defer back.Close()
	if v, err := back.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET through the restarted node = %q, %v", v, err)
	}
	if out := u.output(); !strings.Contains(out, "restarting "+tail.Name) {
		t.Errorf("up did not report the restart:\n%s", out)
	}
}

func upStatus(t *testing.T, dir string) ClusterStatus {
	t.Helper()
	b, err := exec.Command(lockstepBin, "status", "--dir", dir, "--json").Output()
	if err != nil {
		t.Fatalf("lockstep status --dir: %v", err)
	}
	var st ClusterStatus
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestUpRefusesForeignDir checks that `lockstep up` never wipes a
// directory it did not make.
func TestUpRefusesForeignDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/precious.txt", []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(lockstepBin, "up", "--dir", dir, "--base-port", fmt.Sprint(freeRun(t, 3))).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not made by 'lockstep up'") {
		t.Fatalf("want a refusal, got %v:\n%s", err, out)
	}
	if b, err := os.ReadFile(dir + "/precious.txt"); err != nil || string(b) != "keep me" {
		t.Fatalf("file in --dir was touched: %q, %v", b, err)
	}
}

// TestUpRefusesTakenPort checks that `lockstep up` names a node's port that
// is taken and starts nothing, instead of waiting for a node that cannot
// listen and so never joins.
func TestUpRefusesTakenPort(t *testing.T) {
	base := freeRun(t, 3)
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+1))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir() + "/cluster"
	out, err := exec.Command(lockstepBin, "up", "--dir", dir, "--base-port", fmt.Sprint(base)).CombinedOutput()
	want := fmt.Sprintf("the client port of n2, 127.0.0.1:%d, is taken", base+1)
	if err == nil || !strings.Contains(string(out), want) {
		t.Fatalf("want %q, got %v:\n%s", want, err, out)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("--dir was created (%v): nothing should start", err)
	}
}

// TestUpKeepsData follows the quick start across a stop: data written to
// a cluster survives Ctrl-C and a second 'up' in the same directory, which
// resumes the cluster; a second 'up' while the first runs is refused;
// --fresh starts over.
func TestUpKeepsData(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: runs a whole cluster three times")
	}
	dir, base := t.TempDir()+"/cluster", freeRun(t, 3)
	u := startUpIn(t, dir, base, "--protocol", "primary-backup")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rc := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", base+1), MaxRetries: 5})
	defer rc.Close()
	for i := range 100 {
		if err := rc.Set(ctx, fmt.Sprint("k", i), fmt.Sprint("v", i), 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(lockstepBin, "up", "--dir", dir, "--base-port", fmt.Sprint(freeRun(t, 3))).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use by a running 'lockstep up'") {
		t.Fatalf("a second up in the same --dir: %v\n%s", err, out)
	}
	u.stop()

	u = startUpIn(t, dir, base) // no --protocol: the cluster's own is resumed
	if !strings.Contains(u.output(), "resuming the 3-node primary-backup cluster") {
		t.Errorf("up did not say it resumed:\n%s", u.output())
	}
	for i := range 100 {
		if v, err := rc.Get(ctx, fmt.Sprint("k", i)).Result(); err != nil || v != fmt.Sprint("v", i) {
			t.Fatalf("after the restart GET k%d = %q, %v", i, v, err)
		}
	}
	u.stop()

	out, err = exec.Command(lockstepBin, "up", "--dir", dir, "--base-port", fmt.Sprint(base), "--protocol", "chain").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--fresh") {
		t.Fatalf("up with another --protocol over a primary-backup cluster: %v\n%s", err, out)
	}
	u = startUpIn(t, dir, base, "--fresh")
	defer u.stop()
	if n, err := rc.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("after --fresh DBSIZE = %d, %v; want an empty cluster", n, err)
	}
}
