package coord

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// testNode is one simulated node process: its own etcd client, session and
// reconfigurator.
type testNode struct {
	cli    *clientv3.Client
	s      *Session
	cancel context.CancelFunc
	done   chan error
	acts   *atomic.Int64 // "reconfigured" records logged by this node
}

func startNode(t *testing.T, e *Embedded, cluster, name string, ttl time.Duration, opts PlanOptions) *testNode {
	t.Helper()
	cli, err := Dial(e.Endpoints(), nil)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	n := &testNode{cli: cli, done: make(chan error, 1), acts: new(atomic.Int64)}
	logger := slog.New(countingHandler{Handler: testLogger(t).Handler(), msg: "reconfigured", n: n.acts})
	n.s, err = NewSession(testCtx(t), cli, SessionConfig{
		Cluster: cluster, Group: "g", TTL: ttl, Logger: logger,
		Node: NodeInfo{Name: name, State: StateServing, Complete: true},
	})
	if err != nil {
		t.Fatalf("NewSession(%s): %v", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { n.done <- RunReconfigurator(ctx, cli, n.s, opts) }()
	t.Cleanup(func() {
		cancel()
		if err := <-n.done; err != nil && !errors.Is(err, ErrLeaseLost) {
			t.Errorf("RunReconfigurator(%s) = %v", name, err)
		}
		cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
		_ = n.s.Close(cctx)
		ccancel()
		_ = cli.Close()
	})
	return n
}

// crash makes the node vanish without a goodbye: no revoke, no resign.
func (n *testNode) crash() { _ = n.cli.Close() }

// countingHandler counts records with one message, for "who acted".
type countingHandler struct {
	slog.Handler
	msg string
	n   *atomic.Int64
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	if h.Handler.Enabled(ctx, r.Level) {
		return h.Handler.Handle(ctx, r)
	}
	return nil
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return countingHandler{Handler: h.Handler.WithAttrs(as), msg: h.msg, n: h.n}
}

func (h countingHandler) WithGroup(g string) slog.Handler {
	return countingHandler{Handler: h.Handler.WithGroup(g), msg: h.msg, n: h.n}
}

// history records every configuration WatchConfig delivers.
type history struct {
	mu      sync.Mutex
	configs []Config
}

func watchHistory(t *testing.T, cli *clientv3.Client, cluster string) *history {
	ctx, cancel := context.WithCancel(context.Background())
	h := &history{}
	ch := WatchConfig(ctx, cli, cluster, "g")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range ch {
			h.mu.Lock()
			h.configs = append(h.configs, c)
			h.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

// checkEpochs asserts the history is exactly epochs 1..n, each once, in order.
func (h *history) checkEpochs(t *testing.T, n uint64) {
	t.Helper()
	eventually(t, 2*time.Second, "the watcher to see every epoch", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.configs) >= int(n)
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, c := range h.configs {
		if c.Epoch != uint64(i+1) {
			var epochs []uint64
			for _, c := range h.configs {
				epochs = append(epochs, c.Epoch)
			}
			t.Fatalf("configuration epochs %v, want 1..%d each once", epochs, n)
		}
	}
	if uint64(len(h.configs)) != n {
		t.Fatalf("%d configurations written, want %d", len(h.configs), n)
	}
}

// waitConfig polls until the group's configuration satisfies cond and
// returns it with the time it was first seen.
func waitConfig(t *testing.T, cli *clientv3.Client, cluster string, d time.Duration, what string, cond func(Config) bool) (Config, time.Time) {
	t.Helper()
	var c Config
	eventually(t, d, what, func() bool {
		var err error
		c, err = GetConfig(testCtx(t), cli, cluster, "g")
		return err == nil && cond(c)
	})
	return c, time.Now()
}

// electionLeader returns the value of the group's current election winner.
func electionLeader(t *testing.T, cli *clientv3.Client, cluster string) string {
	resp, err := cli.Get(testCtx(t), electionPrefix(cluster, "g")+"/", clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(1))
	if err != nil || len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

func sameMembers(c Config, ms ...Member) bool { return reflect.DeepEqual(c.Members, ms) }

// TestReconfiguratorMiddleCrashAndRejoin runs three nodes with TTL 2s:
// bootstrap, crash of the middle, rejoin of its new incarnation, promotion.
func TestReconfiguratorMiddleCrashAndRejoin(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	cli := dial(t, e)
	cluster := clusterName(t)
	h := watchHistory(t, cli, cluster)
	opts := PlanOptions{BootstrapExpect: 3}
	ttl := 2 * time.Second

	a := startNode(t, e, cluster, "a", ttl, opts)
	eventually(t, 5*time.Second, "a to lead", func() bool { return electionLeader(t, cli, cluster) == a.s.Member().String() })
	b := startNode(t, e, cluster, "b", ttl, opts)
	c := startNode(t, e, cluster, "c", ttl, opts)
	ma, mb, mc := a.s.Member(), b.s.Member(), c.s.Member()
	waitConfig(t, cli, cluster, 5*time.Second, "bootstrap", func(c Config) bool {
		return c.Epoch == 1 && c.Protocol == DefaultProtocol && sameMembers(c, ma, mb, mc)
	})

	b.crash()
	crashed := time.Now()
	_, removed := waitConfig(t, cli, cluster, ttl+1500*time.Millisecond, "b removed", func(c Config) bool {
		return c.Epoch == 2 && sameMembers(c, ma, mc) && c.Joining == nil
	})
	t.Logf("crash of the middle (TTL %v) -> configuration without it: %v", ttl, removed.Sub(crashed))

	b2 := startNode(t, e, cluster, "b", ttl, opts)
	mb2 := b2.s.Member()
	if mb2 == mb {
		t.Fatalf("restarted node kept incarnation %s", mb)
	}
	waitConfig(t, cli, cluster, 5*time.Second, "b2 joining", func(c Config) bool {
		return c.Epoch == 3 && sameMembers(c, ma, mc) && c.Joining != nil && *c.Joining == mb2
	})
	info := b2.s.Info()
	info.State, info.Epoch = StateCaughtUp, 2 // stale epoch: must not be promoted
	if err := b2.s.UpdateInfo(testCtx(t), info); err != nil {
		t.Fatalf("UpdateInfo: %v", err)
	}
	info.Epoch = 3
	if err := b2.s.UpdateInfo(testCtx(t), info); err != nil {
		t.Fatalf("UpdateInfo: %v", err)
	}
	waitConfig(t, cli, cluster, 5*time.Second, "b2 promoted to tail", func(c Config) bool {
		return c.Epoch == 4 && sameMembers(c, ma, mc, mb2) && c.Joining == nil
	})
	h.checkEpochs(t, 4)
	// The leader logs after its write is visible; give the log a moment.
	eventually(t, time.Second, "a to log its 4 writes", func() bool { return a.acts.Load() == 4 })
	if got := [4]int64{a.acts.Load(), b.acts.Load(), c.acts.Load(), b2.acts.Load()}; got != [4]int64{4, 0, 0, 0} {
		t.Fatalf("configurations written by a, b, c, b2 = %v, want only a, 4 times", got)
	}
}

// TestReconfiguratorLeaderCrash starts three reconfigurators at once, checks
// only the election winner writes, then crashes the winner: a survivor must
// take over and remove it.
func TestReconfiguratorLeaderCrash(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	cli := dial(t, e)
	cluster := clusterName(t)
	h := watchHistory(t, cli, cluster)
	opts := PlanOptions{BootstrapExpect: 3}
	ttl := 2 * time.Second

	var nodes []*testNode
	for _, name := range []string{"a", "b", "c"} {
		nodes = append(nodes, startNode(t, e, cluster, name, ttl, opts))
	}
	waitConfig(t, cli, cluster, 5*time.Second, "bootstrap", func(c Config) bool { return c.Epoch == 1 && len(c.Members) == 3 })
	var leader *testNode
	var survivors []Member
	lead := electionLeader(t, cli, cluster)
	for _, n := range nodes {
		if n.s.Member().String() == lead {
			leader = n
		} else {
			survivors = append(survivors, n.s.Member())
		}
	}
	if leader == nil {
		t.Fatalf("election leader %q is none of the nodes", lead)
	}
	// The leader logs after its write is visible; give the log a moment.
	eventually(t, time.Second, "the leader to log its write", func() bool { return leader.acts.Load() == 1 })
	for _, n := range nodes {
		if n != leader && n.acts.Load() != 0 {
			t.Fatalf("%s wrote %d configurations, but %s leads", n.s.Member(), n.acts.Load(), lead)
		}
	}

	leader.crash()
	crashed := time.Now()
	_, removed := waitConfig(t, cli, cluster, ttl+1500*time.Millisecond, "leader removed", func(c Config) bool {
		return c.Epoch == 2 && sameMembers(c, survivors...)
	})
	t.Logf("crash of the reconfiguration leader (TTL %v) -> configuration without it: %v", ttl, removed.Sub(crashed))
	h.checkEpochs(t, 2)
	acted := func() (n int) {
		for _, x := range nodes {
			if x != leader && x.acts.Load() > 0 {
				n++
			}
		}
		return n
	}
	eventually(t, time.Second, "a survivor to log its write", func() bool { return acted() > 0 })
	if n := acted(); n != 1 {
		t.Fatalf("%d survivors wrote configurations, want exactly 1", n)
	}
}

// TestReconfiguratorDeposedLeaderCannotWrite checks that reads and writes
// of a leader whose election key is gone fail.
func TestReconfiguratorDeposedLeaderCannotWrite(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	cli := dial(t, e)
	cluster := clusterName(t)
	s := newTestSession(t, cli, cluster, "a", time.Second)
	gone := clientv3.Compare(clientv3.CreateRevision(electionPrefix(cluster, "g")+"/none"), "=", 7)
	r := &reconfigurator{cli: cli, s: s, opts: PlanOptions{BootstrapExpect: 1},
		log: slog.New(slog.DiscardHandler), cfgKey: configKey(cluster, "g"), pauseKey: pauseKey(cluster, "g"), nodesPfx: nodesPrefix(cluster)}
	if _, err := r.round(testCtx(t), gone); !errors.Is(err, errNotLeader) {
		t.Fatalf("round as deposed leader = %v, want errNotLeader", err)
	}
	next := Config{Epoch: 1, Protocol: "chain", Members: []Member{s.Member()}}
	if _, err := casConfig(testCtx(t), cli, cluster, "g", Config{}, next, "test", gone); !errors.Is(err, ErrConflict) {
		t.Fatalf("CAS as deposed leader = %v, want ErrConflict", err)
	}
	if _, err := GetConfig(testCtx(t), cli, cluster, "g"); !errors.Is(err, ErrNoConfig) {
		t.Fatalf("a deposed leader's write landed: %v", err)
	}
}

func TestReconfiguratorOnePerSession(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	cli := dial(t, e)
	cluster := clusterName(t)
	n := startNode(t, e, cluster, "a", time.Second, PlanOptions{BootstrapExpect: 1})
	waitConfig(t, cli, cluster, 5*time.Second, "bootstrap", func(c Config) bool { return c.Epoch == 1 })
	if err := RunReconfigurator(testCtx(t), n.cli, n.s, PlanOptions{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("second RunReconfigurator on one session = %v, want ErrInvalid", err)
	}
}
