package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep/lockstep/internal/proctest"
)

// etcdMember is one process of an external etcd cluster (Debian's
// etcd-server package), started and killed by the test.
type etcdMember struct {
	name, dir, client, peer string
	cluster                 string // --initial-cluster

	mu   sync.Mutex
	cmd  *exec.Cmd
	log  bytes.Buffer
	done chan struct{}
}

// startEtcdCluster starts three etcd members on free ports, or skips the
// test when the etcd binary is missing.
func startEtcdCluster(t *testing.T) ([]*etcdMember, string) {
	t.Helper()
	if _, err := exec.LookPath("etcd"); err != nil {
		t.Skip("etcd not installed: apt-get install etcd-server")
	}
	var ms []*etcdMember
	var peers, clients []string
	for i := 1; i <= 3; i++ {
		cp, err1 := proctest.FreePort()
		pp, err2 := proctest.FreePort()
		if err1 != nil || err2 != nil {
			t.Fatalf("free ports: %v %v", err1, err2)
		}
		m := &etcdMember{name: fmt.Sprintf("e%d", i), dir: filepath.Join(t.TempDir(), "etcd"),
			client: fmt.Sprintf("http://127.0.0.1:%d", cp), peer: fmt.Sprintf("http://127.0.0.1:%d", pp)}
		ms = append(ms, m)
		peers = append(peers, m.name+"="+m.peer)
		clients = append(clients, m.client)
	}
	for _, m := range ms {
		m.cluster = strings.Join(peers, ",")
		m.start(t)
	}
	t.Cleanup(func() {
		for _, m := range ms {
			m.kill()
		}
	})
	endpoints := strings.Join(clients, ",")
	proctest.Eventually(t, 30*time.Second, "the etcd cluster to elect a leader", func() bool { return etcdLeader(ms) != nil })
	return ms, endpoints
}

// start runs the member on its directory (a new cluster the first time,
// the same member again after a kill).
func (m *etcdMember) start(t *testing.T) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cmd = exec.Command("etcd", "--name", m.name, "--data-dir", m.dir,
		"--listen-client-urls", m.client, "--advertise-client-urls", m.client,
		"--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
		"--initial-cluster", m.cluster, "--initial-cluster-state", "new",
		"--initial-cluster-token", "lockstep-e2e", "--heartbeat-interval", "50", "--election-timeout", "500")
	m.cmd.Stdout, m.cmd.Stderr = &m.log, &m.log
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start etcd %s: %v", m.name, err)
	}
	m.done = make(chan struct{})
	cmd, done := m.cmd, m.done
	go func() { _ = cmd.Wait(); close(done) }()
}

// kill SIGKILLs the member and waits for it to be gone.
func (m *etcdMember) kill() {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// etcdLeader returns the member that leads, or nil.
func etcdLeader(ms []*etcdMember) *etcdMember {
	for _, m := range ms {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.client}, DialTimeout: time.Second})
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := cli.Status(ctx, m.client)
		cancel()
		cli.Close()
		if err == nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
			return m
		}
	}
	return nil
}

// TestExternalEtcdLeaderChange runs a durable chain against an external
// 3-member etcd cluster under 8 clients, SIGKILLs etcd's leader and then
// a follower, restarting each: the group keeps serving (or resumes on its
// own), no server exits, nothing acknowledged is lost and the history is
// linearizable.
func TestExternalEtcdLeaderChange(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: an external etcd cluster and two of its members killed")
	}
	ms, endpoints := startEtcdCluster(t)
	dataRoot := t.TempDir()
	c := &cluster{t: t, endpoints: endpoints, size: 3, protocol: chainProto, procs: map[string]*proctest.Proc{},
		extraArgs: func(name string) []string {
			return []string{"--storage", "pebble", "--fsync", "always", "--data-dir", filepath.Join(dataRoot, name)}
		}}
	for i := 1; i <= 3; i++ {
		c.start(nodeName(i))
	}
	c.waitMembers(3, 30*time.Second)
	w, stop := startLoad(t, c, c.addrs, "writes before etcd's leader dies")
	for _, which := range []string{"leader", "follower"} {
		victim := etcdLeader(ms)
		if which == "follower" {
			for _, m := range ms {
				if m != victim {
					victim = m
					break
				}
			}
		}
		if victim == nil {
			t.Fatal("no etcd leader")
		}
		victim.kill()
		before := w.acked.Load()
		proctest.Eventually(t, 30*time.Second, "writes with etcd's "+which+" dead", func() bool { return w.acked.Load() >= before+200 })
		victim.start(t)
		proctest.Eventually(t, 30*time.Second, "etcd whole again", func() bool { return etcdLeader(ms) != nil })
		t.Logf("etcd %s %s killed and restarted; %d writes acknowledged", which, victim.name, w.acked.Load())
	}
	before := w.acked.Load()
	proctest.Eventually(t, 30*time.Second, "writes at the end", func() bool { return w.acked.Load() >= before+200 })
	for name, p := range c.procs {
		if p.Exited() {
			t.Errorf("%s exited:\n%s", name, p.Log())
		}
	}
	stop()
	c.waitIdentical("n1", "n2", "n3")
	checkLinearizable(t, &w.rec)
}
