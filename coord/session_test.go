package coord

import (
	"context"
	"errors"
	"strings"
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

// TestSessionRestartedIncarnation restarts a name after its process
// ended: after a clean exit (Close) the new incarnation registers at once;
// after a crash (renewals stop, nothing revoked) it waits for the old
// lease to expire and registers then. Either way the old incarnation can
// no longer publish.
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
	if err := old.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	restarted := newSessionWait(t, cli, cluster, "a", time.Millisecond)
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

	restarted.stopRenewing() // a crash: the lease is left to expire
	again := newSessionWait(t, cli, cluster, "a", 0)
	if got := nodeNames(t, cli, cluster)["a"]; got.Incarnation != again.Member().Incarnation {
		t.Fatalf("after the crash registered incarnation %s, want %s", got.Incarnation, again.Member().Incarnation)
	}
}

// newSessionWait registers name with a one-second TTL, waiting up to wait
// (0: the default) for an earlier registration to end.
func newSessionWait(t *testing.T, cli *clientv3.Client, cluster, name string, wait time.Duration) *Session {
	t.Helper()
	s, err := NewSession(testCtx(t), cli, SessionConfig{
		Cluster: cluster, Group: "g", TTL: time.Second, Logger: testLogger(t), RegisterWait: wait,
		Node: NodeInfo{Name: name, Pid: 43},
	})
	if err != nil {
		t.Fatalf("NewSession(%s): %v", name, err)
	}
	t.Cleanup(func() { _ = s.Close(context.WithoutCancel(testCtx(t))) })
	return s
}

// TestSessionNameHeldByALiveProcess starts a second process under the
// name of a live one: it must not take the name over (which would get the
// live process removed from its group while its lease kept it serving),
// but fail with ErrNameInUse after its wait, leaving the first registered
// and valid; and it must register once the first has gone.
func TestSessionNameHeldByALiveProcess(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	cli := dial(t, e)
	cluster := clusterName(t)
	first := newTestSession(t, cli, cluster, "a", time.Second)
	_, err := NewSession(testCtx(t), cli, SessionConfig{
		Cluster: cluster, Group: "g", TTL: time.Second, Logger: testLogger(t), RegisterWait: 300 * time.Millisecond,
		Node: NodeInfo{Name: "a", Pid: 43},
	})
	if !errors.Is(err, ErrNameInUse) || !strings.Contains(err.Error(), first.Member().Incarnation) {
		t.Fatalf("second NewSession = %v, want ErrNameInUse naming incarnation %s", err, first.Member().Incarnation)
	}
	if got := nodeNames(t, cli, cluster)["a"]; got.Incarnation != first.Member().Incarnation {
		t.Fatalf("registered incarnation %s, want the live first one %s", got.Incarnation, first.Member().Incarnation)
	}
	if err := first.UpdateInfo(testCtx(t), first.Info()); err != nil || !first.Valid() {
		t.Fatalf("first session after the refused one: UpdateInfo %v, Valid %v; want nil, true", err, first.Valid())
	}
	type result struct {
		s   *Session
		err error
	}
	got := make(chan result, 1)
	go func() {
		s, err := NewSession(testCtx(t), cli, SessionConfig{
			Cluster: cluster, Group: "g", TTL: time.Second, Logger: testLogger(t), RegisterWait: 20 * time.Second,
			Node: NodeInfo{Name: "a", Pid: 44},
		})
		got <- result{s, err}
	}()
	if err := first.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil {
		t.Fatalf("NewSession after the first closed: %v", r.err)
	}
	defer r.s.Close(context.WithoutCancel(testCtx(t)))
	if got := nodeNames(t, cli, cluster)["a"]; got.Incarnation != r.s.Member().Incarnation {
		t.Fatalf("registered incarnation %s, want the waiting one %s", got.Incarnation, r.s.Member().Incarnation)
	}
}

// TestSessionLostRegistrationStopsServingAtOnce revokes a session's lease
// (what fencing does) and, for another session, deletes its registration:
// each must stop being Valid within a second, long before its next renewal
// (TTL/3 = 10 s) would notice, since a node that goes on serving reads
// after its group removed it serves stale data.
func TestSessionLostRegistrationStopsServingAtOnce(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	cli := dial(t, e)
	cluster := clusterName(t)
	revoked := newTestSession(t, cli, cluster, "a", 30*time.Second)
	deleted := newTestSession(t, cli, cluster, "b", 30*time.Second)
	if _, err := cli.Revoke(testCtx(t), revoked.LeaseID()); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(testCtx(t), nodeKey(cluster, "b")); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Session{revoked, deleted} {
		eventually(t, time.Second, s.Member().Name+" to stop being valid", func() bool { return !s.Valid() })
		if !errors.Is(s.Err(), ErrLeaseLost) {
			t.Fatalf("%s: Err %v, want ErrLeaseLost", s.Member().Name, s.Err())
		}
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
