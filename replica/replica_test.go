package replica

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/dedup"
	"github.com/lockstep/lockstep/kv"
	"github.com/lockstep/lockstep/protocol/chain"
	"github.com/lockstep/lockstep/storage"
)

// newMachine is the state machine the runtime runs, over store.
func newMachine(t testing.TB, store storage.Store) *dedup.Machine {
	t.Helper()
	m, err := dedup.Wrap(kv.New(store, kv.Options{}), 0)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestCommitPointWakesOnlyCommitted checks that an advance releases
// exactly the waiters it covers, in any registration order, and that a
// change of role reaches every waiter.
func TestCommitPointWakesOnlyCommitted(t *testing.T) {
	var c commitPoint
	c.init()
	seqs := []uint64{5, 2, 9, 2, 7}
	done := make([]<-chan struct{}, len(seqs))
	for i, s := range seqs {
		d, _, err := c.wait(s, far)
		if err != nil {
			t.Fatal(err)
		}
		done[i] = d
	}
	c.advance(5)
	for i, s := range seqs {
		if closed(done[i]) != (s <= 5) {
			t.Errorf("after advance(5), waiter for %d released = %v", s, closed(done[i]))
		}
	}
	if d, _, _ := c.wait(3, far); !closed(d) {
		t.Error("waiting for an already committed seq must not block")
	}
	_, changed, _ := c.wait(9, far)
	c.wake()
	if !closed(changed) {
		t.Error("wake did not signal a change")
	}
	c.fail(errors.New("boom"))
	if _, _, err := c.wait(100, far); err == nil {
		t.Error("wait after fail returned no error")
	}
	c.advance(9)
	for i := range seqs {
		if !closed(done[i]) {
			t.Errorf("waiter %d not released by advance(9)", i)
		}
	}
}

var far = time.Now().Add(time.Hour)

var errTimeout = errors.New("timeout")

// outcome records what a callback waiter was told, and how often.
type outcome struct {
	mu    sync.Mutex
	calls int
	err   error
}

func (o *outcome) done(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls++
	o.err = err
}

func (o *outcome) get() (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.calls, o.err
}

// TestCommitPointCallbacks checks the callback waiters OnCommit uses:
// each is told exactly once, with nil at its commit, with the timeout
// after its deadline, with the reason when the replica stops ordering or
// fails, and not at all when its seq had already committed.
func TestCommitPointCallbacks(t *testing.T) {
	var c commitPoint
	c.init()
	now := time.Now()
	var committed, expired, abandoned, late outcome
	c.onCommit(3, far, committed.done)
	c.onCommit(8, now.Add(time.Second), expired.done)
	c.onCommit(9, far, abandoned.done)
	c.advance(5)
	c.advance(6)
	if n, err := committed.get(); n != 1 || err != nil {
		t.Fatalf("seq 3 after advance(6): told %d times, last %v; want once, nil", n, err)
	}
	c.expire(now.Add(time.Minute), errTimeout)
	if n, err := expired.get(); n != 1 || err != errTimeout {
		t.Fatalf("seq 8 after its deadline: told %d times, last %v; want once, the timeout", n, err)
	}
	c.abandon(ErrOutcomeUnknown)
	c.advance(9)
	if n, err := abandoned.get(); n != 1 || !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("seq 9 abandoned: told %d times, last %v; want once, ErrOutcomeUnknown", n, err)
	}
	if c.onCommit(9, far, late.done) {
		t.Fatal("onCommit for a committed seq must report false")
	}
	c.fail(errors.New("disk"))
	if !c.onCommit(20, far, late.done) {
		t.Fatal("onCommit after a failure must take the callback")
	}
	if n, err := late.get(); n != 1 || err == nil {
		t.Fatalf("onCommit after a failure: told %d times, last %v; want once, the failure", n, err)
	}
	if len(c.waiters) != 0 {
		t.Fatalf("%d waiters left", len(c.waiters))
	}
}

// TestCommitPointExpiresPastDeadlines checks that expire releases exactly
// the waiters whose deadline has passed, and that they stay uncommitted,
// which is how Wait tells a timeout from a commit.
func TestCommitPointExpiresPastDeadlines(t *testing.T) {
	var c commitPoint
	c.init()
	now := time.Now()
	early, _, _ := c.wait(4, now.Add(time.Second))
	late, _, _ := c.wait(2, now.Add(time.Minute))
	c.expire(now.Add(30*time.Second), errTimeout)
	if !closed(early) || closed(late) {
		t.Fatalf("after expire: early released %v (want true), late released %v (want false)", closed(early), closed(late))
	}
	if c.seq.Load() >= 4 {
		t.Fatal("expire must not move the commit point")
	}
	c.advance(2)
	if !closed(late) || len(c.waiters) != 0 {
		t.Fatalf("advance(2) left late released=%v and %d waiters", closed(late), len(c.waiters))
	}
}

// TestWaitTimesOutWithoutATimerPerWrite checks the path a timer per
// write used to serve: a head whose successor never acknowledges answers
// a write's wait with ErrOutcomeUnknown once WaitTimeout has passed, and
// not before.
func TestWaitTimesOutWithoutATimerPerWrite(t *testing.T) {
	store := storage.NewMemory()
	r, err := New(Options{Name: "n1", Incarnation: "i", Machine: newMachine(t, store), Store: store,
		Tick: 5 * time.Millisecond, WaitTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r.Attach(dropAll{}, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go r.Run(ctx)
	r.SetConfig(coord.Config{Epoch: 1, Protocol: ProtocolChain, Members: []coord.Member{{Name: "n1", Incarnation: "i"}, {Name: "n2", Incarnation: "x"}}})
	deadline := time.Now().Add(10 * time.Second)
	for r.Role() != RoleHead {
		if time.Now().After(deadline) {
			t.Fatalf("role %v, never head", r.Role())
		}
		runtime.Gosched()
	}
	_, gate, err := r.Write(toArgs("SET", "k", "v"), nil)
	if err != nil || gate == 0 {
		t.Fatalf("Write = gate %d, %v", gate, err)
	}
	start := time.Now()
	err = r.Wait(ctx, gate)
	if took := time.Since(start); !errors.Is(err, ErrOutcomeUnknown) || took < 100*time.Millisecond || took > 5*time.Second {
		t.Fatalf("Wait for an unacknowledged write = %v after %v; want ErrOutcomeUnknown after 100ms", err, took)
	}

	// The same through OnCommit, and then a change of role: a head that
	// becomes the tail tells a pending callback at once.
	got := make(chan error, 2)
	start = time.Now()
	if !r.OnCommit(gate, func(err error) { got <- err }) {
		t.Fatal("OnCommit for an uncommitted write reported it committed")
	}
	select {
	case err := <-got:
		if took := time.Since(start); !errors.Is(err, ErrOutcomeUnknown) || took < 100*time.Millisecond {
			t.Fatalf("OnCommit outcome %v after %v; want ErrOutcomeUnknown after 100ms", err, took)
		}
	case <-ctx.Done():
		t.Fatal("OnCommit never reported the timeout")
	}
	_, gate, _ = r.Write(toArgs("SET", "k", "w"), nil)
	if !r.OnCommit(gate, func(err error) { got <- err }) {
		t.Fatal("OnCommit for a second uncommitted write reported it committed")
	}
	r.SetConfig(coord.Config{Epoch: 2, Protocol: ProtocolChain, Members: []coord.Member{{Name: "n2", Incarnation: "x"}, {Name: "n1", Incarnation: "i"}}})
	select {
	case err := <-got:
		if !errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("OnCommit outcome after losing the head role: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("losing the head role did not end the callback's wait")
	}
	if r.Role() == RoleHead {
		t.Fatal("still head after the new configuration")
	}
}

type dropAll struct{}

func (dropAll) Send(string, []byte) bool { return false }

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestConfigHidesOtherIncarnation checks that a restarted process (same
// name, new incarnation) is not mistaken for the member slot its
// predecessor held: it must rejoin. Every protocol's core sees it so.
func TestConfigHidesOtherIncarnation(t *testing.T) {
	cfg := coord.Config{Epoch: 4, Members: []coord.Member{{Name: "n1", Incarnation: "a"}, {Name: "n2", Incarnation: "b"}}}
	members, _, member := memberIDs(cfg, "n2", "b")
	if !member || !slices.Equal(members, []string{"n1", "n2"}) {
		t.Fatalf("same incarnation: %v member=%v", members, member)
	}
	members, _, member = memberIDs(cfg, "n2", "c")
	if member || slices.Contains(members, "n2") {
		t.Fatalf("new incarnation must not be the member: %v member=%v", members, member)
	}
	for _, proto := range []string{ProtocolChain, ProtocolPrimaryBackup, ProtocolCheckpoint} {
		core, err := newCore(proto, "n2", CoreOptions{}, newTestReplica(t, "x").sm)
		if err != nil {
			t.Fatal(err)
		}
		if setCoreConfig(core, cfg, "n2", "c") {
			t.Fatalf("%s: new incarnation reported as member", proto)
		}
		if r := core.Status().Role; r != RoleNone {
			t.Fatalf("%s: core of the new incarnation has role %v", proto, r)
		}
	}
	cfg.Joining = &coord.Member{Name: "n2", Incarnation: "c"}
	cfg.Members = cfg.Members[:1]
	if _, joining, member := memberIDs(cfg, "n2", "c"); !member || joining != "n2" {
		t.Fatalf("joining as the new incarnation: %q member=%v", joining, member)
	}
}

// TestUnknownProtocolRefused: a replica is built only for a protocol this
// build runs.
func TestUnknownProtocolRefused(t *testing.T) {
	if _, err := newCore("paxos", "n1", CoreOptions{}, newTestReplica(t, "x").sm); !errors.Is(err, ErrUnknownProtocol) {
		t.Fatalf("newCore(paxos) = %v, want ErrUnknownProtocol", err)
	}
}

// TestFailureIsSignalled checks that a local storage failure stops the
// replica, fails waiting writers and closes Failed, which is how the
// process knows to leave the cluster.
func TestFailureIsSignalled(t *testing.T) {
	r := newTestReplica(t, "n1")
	done, changed, err := r.commit.wait(5, far)
	if err != nil {
		t.Fatal(err)
	}
	_ = r.store.Close()
	u, _ := r.sm.Prepare(toArgs("SET", "k", "v"), fixedEnv{})
	r.mu.Lock()
	applyErr := r.applyLocked([]chain.Entry{{Seq: 1, Data: u}})
	r.mu.Unlock()
	if applyErr == nil {
		t.Fatal("apply on a closed store succeeded")
	}
	r.fail(applyErr)
	select {
	case <-r.Failed():
	default:
		t.Fatal("Failed not closed")
	}
	if !errors.Is(r.Err(), ErrFailed) {
		t.Fatalf("Err = %v", r.Err())
	}
	if closed(done) || !closed(changed) {
		t.Fatal("a waiting writer was released instead of failed")
	}
	if _, _, err := r.commit.wait(5, far); err == nil {
		t.Fatal("new waits must fail")
	}
	if _, _, err := r.Write(toArgs("SET", "k", "v"), nil); !errors.Is(err, ErrFailed) {
		t.Fatalf("Write after failure: %v", err)
	}
}

// TestDigestComparesState: lockstep.digest is answered locally, and equal
// states at equal seqs have equal digests while any difference shows.
func TestDigestComparesState(t *testing.T) {
	digest := func(r *Replica) string {
		out, gate, err := r.Read(toArgs("LOCKSTEP.DIGEST"), nil)
		if err != nil || gate != 0 {
			t.Fatalf("digest: %v gate %d", err, gate)
		}
		return string(out)
	}
	a, b := newTestReplica(t, "a"), newTestReplica(t, "b")
	for i, r := range []*Replica{a, b} {
		for seq, kv := range [][]string{{"k", "v"}, {"j", "w"}} {
			u, _ := r.sm.Prepare(toArgs("SET", kv[0], kv[1]), fixedEnv{})
			if _, err := r.sm.Apply(uint64(seq+1), u, nil); err != nil {
				t.Fatalf("replica %d: %v", i, err)
			}
		}
	}
	da, db := digest(a), digest(b)
	if da != db || !strings.Contains(da, "seq=2 sha256=") {
		t.Fatalf("same state, digests %q and %q", da, db)
	}
	u, _ := b.sm.Prepare(toArgs("SET", "k", "other"), fixedEnv{})
	if _, err := b.sm.Apply(3, u, nil); err != nil {
		t.Fatal(err)
	}
	if digest(b) == da {
		t.Fatal("a changed state kept its digest")
	}
}

// TestOlderConfigurationIgnored: a watch that delivers a configuration
// late (older than the one installed) must change nothing: not the
// epoch, not the role, not where requests are forwarded.
func TestOlderConfigurationIgnored(t *testing.T) {
	store := storage.NewMemory()
	r, err := New(Options{Name: "b", Incarnation: "i", Machine: newMachine(t, store), Store: store})
	if err != nil {
		t.Fatal(err)
	}
	r.Attach(dropAll{}, nil, nil)
	a, b, c := coord.Member{Name: "a", Incarnation: "x"}, coord.Member{Name: "b", Incarnation: "i"}, coord.Member{Name: "c", Incarnation: "y"}
	r.SetNodes([]coord.NodeInfo{
		{Name: "a", Incarnation: "x", ClientAddr: "a:1"}, {Name: "b", Incarnation: "i", ClientAddr: "b:1"},
		{Name: "c", Incarnation: "y", ClientAddr: "c:1"},
	})
	r.applyConfig(coord.Config{Epoch: 2, Protocol: ProtocolChain, Members: []coord.Member{b, c}})
	r.applyConfig(coord.Config{Epoch: 1, Protocol: ProtocolChain, Members: []coord.Member{a, b, c}})
	if r.Epoch() != 2 || r.Role() != RoleHead {
		t.Fatalf("after an older configuration: epoch %d role %v, want 2 head", r.Epoch(), r.Role())
	}
	if head, _ := r.routes.target(true); head != "b:1" {
		t.Fatalf("writes routed to %q after an older configuration, want b:1", head)
	}
}
