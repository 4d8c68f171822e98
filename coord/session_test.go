package coord

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep/lockstep/internal/proctest"
)

// newTestSession registers node name in cluster with the given TTL and
// closes the session at cleanup (a no-op error if it already ended).
func newTestSession(t *testing.T, cli *clientv3.Client, cluster, name string, ttl time.Duration) *Session {
	t.Helper()
	s, err := NewSession(testCtx(t), cli, SessionConfig{
		Cluster: cluster, Group: "g", TTL: ttl, Logger: testLogger(t),
		Node: NodeInfo{Name: name, ClientAddr: "127.0.0.1:1", Pid: 42},
	})
	if err != nil {
		t.Fatalf("NewSession(%s): %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	proctest.Eventually(t, d, what, cond)
}

func nodeNames(t *testing.T, cli *clientv3.Client, cluster string) map[string]NodeInfo {
	t.Helper()
	nodes, err := ListNodes(testCtx(t), cli, cluster)
	if err != nil {
		t.Fatalf("ListNodes: %v", err)
	}
	out := make(map[string]NodeInfo, len(nodes))
	for _, n := range nodes {
		out[n.Name] = n
	}
	return out
}

func TestSessionRegistersAndRenews(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	cli := dial(t, e)
	s := newTestSession(t, cli, clusterName(t), "a", time.Second)
	if s.TTL() != time.Second {
		t.Fatalf("TTL = %v, want 1s", s.TTL())
	}
	n, ok := nodeNames(t, cli, clusterName(t))["a"]
	if !ok || n.Incarnation != s.Member().Incarnation || n.State != StateStarting || n.Pid != 42 || n.CreateRevision == 0 {
		t.Fatalf("registered node = %+v (found %v), want incarnation %s state starting pid 42", n, ok, s.Member().Incarnation)
	}
	ttl, err := cli.TimeToLive(testCtx(t), s.LeaseID(), clientv3.WithAttachedKeys())
	if err != nil || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != nodeKey(clusterName(t), "a") {
		t.Fatalf("lease keys = %v, %v; want the node key", ttl, err)
	}
	if !s.Valid() {
		t.Fatalf("new session not valid")
	}
	first := s.ValidUntil()
	eventually(t, 3*time.Second, "ValidUntil to advance twice", func() bool {
		return s.ValidUntil().Sub(first) > 500*time.Millisecond
	})
	if !s.Valid() {
		t.Fatalf("renewing session not valid")
	}
}

// TestSessionFencingPrecedesExpiry simulates a crash (renewals stop, no
// revoke) and checks the fencing rule against the real etcd: the lease is
// still alive at ValidUntil, so a node that stops serving then never
// overlaps with a successor.
func TestSessionFencingPrecedesExpiry(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	cli := dial(t, e)
	s := newTestSession(t, cli, clusterName(t), "a", time.Second)
	eventually(t, 2*time.Second, "a renewal", func() bool { return time.Until(s.ValidUntil()) > 700*time.Millisecond })
	s.stopRenewing()
	crashed := time.Now()
	validUntil := s.ValidUntil()
	var lastAliveSent, goneAt time.Time
	// Sample etcd's view of the lease every 5 ms: the sampling rate is
	// the resolution of the measurement.
	sample := time.NewTicker(5 * time.Millisecond)
	defer sample.Stop()
	for ; goneAt.IsZero(); <-sample.C {
		sent := time.Now()
		resp, err := cli.TimeToLive(testCtx(t), s.LeaseID())
		switch {
		case err != nil:
			t.Fatalf("TimeToLive: %v", err)
		case resp.TTL == -1:
			goneAt = time.Now()
		default:
			lastAliveSent = sent
		}
		if time.Since(crashed) > 3*time.Second {
			t.Fatalf("lease still alive 3s after the crash")
		}
	}
	t.Logf("crash→ValidUntil %v, crash→lease gone %v, lease alive at ValidUntil+%v",
		validUntil.Sub(crashed), goneAt.Sub(crashed), lastAliveSent.Sub(validUntil))
	if !lastAliveSent.After(validUntil) || !goneAt.After(validUntil) {
		t.Fatalf("lease expired before ValidUntil: last seen alive (request sent) %v, gone by %v, ValidUntil %v",
			lastAliveSent, goneAt, validUntil)
	}
	if s.Valid() {
		t.Fatalf("session still valid after its lease expired")
	}
	if _, ok := nodeNames(t, cli, clusterName(t))["a"]; ok {
		t.Fatalf("nodes/a still registered after lease expiry")
	}
}

// TestSessionValidUntilFormula drives the injected clock and checks
// ValidUntil = time read before sending the renewal + TTL - margin.
func TestSessionValidUntilFormula(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	cli := dial(t, e)
	var mu sync.Mutex
	clock := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	setClock := func(t time.Time) { mu.Lock(); clock = t; mu.Unlock() }
	s, err := NewSession(testCtx(t), cli, SessionConfig{
		Cluster: clusterName(t), Group: "g", Node: NodeInfo{Name: "a"}, TTL: 1500 * time.Millisecond, Now: now,
	})
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	defer func() { _ = s.Close(context.Background()) }()
	if s.TTL() != 2*time.Second {
		t.Fatalf("TTL = %v, want 1.5s rounded up to 2s", s.TTL())
	}
	margin := 200 * time.Millisecond // max(TTL/10, 100ms)
	if got, want := s.ValidUntil(), clock.Add(2*time.Second-margin); !got.Equal(want) {
		t.Fatalf("ValidUntil after grant = %v, want %v", got, want)
	}
	later := clock.Add(time.Hour)
	setClock(later)
	if s.Valid() {
		t.Fatalf("Valid with the clock past ValidUntil")
	}
	eventually(t, 2*time.Second, "a renewal at the new clock", func() bool {
		return s.ValidUntil().Equal(later.Add(2*time.Second - margin))
	})
	if !s.Valid() {
		t.Fatalf("not Valid after a renewal")
	}
}

func TestSessionCloseRevokes(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	cli := dial(t, e)
	s := newTestSession(t, cli, clusterName(t), "a", time.Second)
	if err := s.Close(testCtx(t)); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, ok := nodeNames(t, cli, clusterName(t))["a"]; ok {
		t.Fatalf("nodes/a still registered after Close")
	}
	select {
	case <-s.Done():
	default:
		t.Fatalf("Done not closed after Close")
	}
	if s.Valid() || !errors.Is(s.Err(), ErrSessionClosed) {
		t.Fatalf("after Close: Valid %v, Err %v; want false, ErrSessionClosed", s.Valid(), s.Err())
	}
}

func TestSessionLeaseLost(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	cli := dial(t, e)
	s := newTestSession(t, cli, clusterName(t), "a", time.Second)
	if _, err := cli.Revoke(testCtx(t), s.LeaseID()); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	select {
	case <-s.Done():
	case <-time.After(3 * time.Second):
		t.Fatalf("Done not closed after the lease was revoked")
	}
	if s.Valid() || !errors.Is(s.Err(), ErrLeaseLost) {
		t.Fatalf("after lease loss: Valid %v, Err %v; want false, ErrLeaseLost", s.Valid(), s.Err())
	}
}

// TestSessionRestartedIncarnation registers the same name twice: the second
// incarnation replaces the first, which can no longer publish.
func TestSessionRestartedIncarnation(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	cli := dial(t, e)
	cluster := clusterName(t)
	old := newTestSession(t, cli, cluster, "a", time.Second)
	info := old.Info()
	info.State, info.Epoch, info.Applied = StateServing, 3, 17
	if err := old.UpdateInfo(testCtx(t), info); err != nil {
		t.Fatalf("UpdateInfo: %v", err)
	}
	got := nodeNames(t, cli, cluster)["a"]
	if got.State != StateServing || got.Epoch != 3 || got.Applied != 17 {
		t.Fatalf("after UpdateInfo node = %+v", got)
	}
	oldRev := got.CreateRevision
	restarted := newTestSession(t, cli, cluster, "a", time.Second)
	got = nodeNames(t, cli, cluster)["a"]
	if got.Incarnation != restarted.Member().Incarnation || got.Incarnation == old.Member().Incarnation {
		t.Fatalf("registered incarnation %s, want the new %s", got.Incarnation, restarted.Member().Incarnation)
	}
	if got.CreateRevision <= oldRev {
		t.Fatalf("new incarnation CreateRevision %d, want > %d", got.CreateRevision, oldRev)
	}
	if err := old.UpdateInfo(testCtx(t), info); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("old incarnation UpdateInfo = %v, want ErrLeaseLost", err)
	}
}

func TestSessionRejectsBadNames(t *testing.T) {
	e := startEtcd(t)
	cli := dial(t, e)
	for _, cfg := range []SessionConfig{
		{Cluster: "", Group: "g", Node: NodeInfo{Name: "a"}},
		{Cluster: "c", Group: "g/h", Node: NodeInfo{Name: "a"}},
		{Cluster: "c", Group: "g", Node: NodeInfo{Name: ""}},
	} {
		if _, err := NewSession(testCtx(t), cli, cfg); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewSession(%+v) = %v, want ErrInvalid", cfg, err)
		}
	}
}
