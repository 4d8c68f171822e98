package coord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultTTL is the lease TTL used when SessionConfig.TTL is zero. It bounds
// failure detection: a crashed node leaves its groups about one TTL later.
const DefaultTTL = 2 * time.Second

// SessionConfig configures NewSession.
type SessionConfig struct {
	Cluster string
	// Group is the replication group the node serves; RunReconfigurator
	// manages it.
	Group string
	// Node is the first NodeInfo published. Name is required; an empty
	// Incarnation is filled with NewIncarnation and an empty State with
	// StateStarting.
	Node NodeInfo
	// TTL is the lease TTL (DefaultTTL if zero). etcd leases are whole
	// seconds, so TTL is rounded up to a second, and etcd itself may grant
	// more (its minimum is 1.5 election timeouts, rounded up). The session
	// always uses the TTL etcd actually granted; see Session.TTL.
	TTL time.Duration
	// Now is the clock used for fencing; time.Now if nil. It must carry a
	// monotonic reading or otherwise never jump.
	Now func() time.Time
	// Logger receives renewal problems; nil discards them.
	Logger *slog.Logger
	// RegisterWait bounds how long NewSession waits for another process's
	// registration of the same name to end (its lease to expire, or to be
	// fenced) before it fails with ErrNameInUse. Zero means three TTLs of
	// the longer of the two leases: long enough for a process that died
	// unfenced to be forgotten, short enough to tell an operator soon
	// that the name belongs to a process that is alive.
	RegisterWait time.Duration
}

// Session is one node process's registration with the coordinator: a lease,
// the nodes/<name> key attached to it, and a goroutine that renews the lease
// every TTL/3 with KeepAliveOnce. It is the failure detector (crash = the
// lease expires) and the basis of fencing (ValidUntil). All methods are safe
// for concurrent use.
type Session struct {
	cli     *clientv3.Client
	cluster string
	group   string
	member  Member
	lease   clientv3.LeaseID
	ttl     time.Duration
	margin  time.Duration
	now     func() time.Time
	log     *slog.Logger

	stopLoop  context.CancelFunc // ends renewals without revoking
	loopDone  chan struct{}
	watchDone chan struct{}
	done      chan struct{}

	reconfiguring atomic.Bool // a RunReconfigurator is using the session

	mu         sync.Mutex
	info       NodeInfo
	validUntil time.Time
	err        error // why done is closed
}

// NewSession grants a lease, registers cfg.Node under nodes/<name> with it
// and starts renewing it and watching the registration. ctx bounds only
// this setup; the session lives until Close or until its lease is lost.
// A name registered by another process is not taken over while that
// process's lease lives (see register): NewSession waits up to
// cfg.RegisterWait for it to end, then fails with ErrNameInUse. A process
// that exited cleanly, or was fenced after it died, left no registration,
// so its restart registers at once as a new incarnation (with a new
// registration order, NodeInfo.CreateRevision).
func NewSession(ctx context.Context, cli *clientv3.Client, cfg SessionConfig) (*Session, error) {
	if err := validateSessionConfig(&cfg); err != nil {
		return nil, err
	}
	secs := int64(math.Ceil(cfg.TTL.Seconds()))
	sent := cfg.Now()
	grant, err := cli.Grant(ctx, secs)
	if err != nil {
		return nil, fmt.Errorf("coord: grant lease: %w", err)
	}
	ttl := time.Duration(grant.TTL) * time.Second
	s := &Session{
		cli: cli, cluster: cfg.Cluster, group: cfg.Group,
		member: cfg.Node.Member(), lease: grant.ID,
		ttl: ttl, margin: FencingMargin(ttl), now: cfg.Now, log: cfg.Logger,
		loopDone: make(chan struct{}), watchDone: make(chan struct{}), done: make(chan struct{}),
		info: cfg.Node,
	}
	s.validUntil = sent.Add(s.ttl - s.margin)
	rev, err := s.register(ctx, cfg.RegisterWait)
	if err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_, _ = cli.Revoke(rctx, grant.ID)
		cancel()
		return nil, err
	}
	loopCtx, stop := context.WithCancel(context.Background())
	s.stopLoop = stop
	go s.renewLoop(loopCtx)
	go s.watchRegistration(loopCtx, rev)
	return s, nil
}

func validateSessionConfig(cfg *SessionConfig) error {
	for _, c := range [][2]string{{"cluster", cfg.Cluster}, {"group", cfg.Group}, {"node name", cfg.Node.Name}} {
		if err := validName(c[0], c[1]); err != nil {
			return err
		}
	}
	if cfg.Node.Incarnation == "" {
		cfg.Node.Incarnation = NewIncarnation()
	}
	if cfg.Node.State == "" {
		cfg.Node.State = StateStarting
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// FencingMargin is how much earlier than the lease's earliest possible
// expiry a node stops serving. It absorbs the difference in clock rate
// between this node and the etcd leader over one TTL; 10% is far beyond any
// real crystal drift, and the 100 ms floor covers scheduling delay in
// noticing that the time has come. The whole-node simulation counts its
// nodes' leases with it too.
func FencingMargin(ttl time.Duration) time.Duration {
	return max(ttl/10, 100*time.Millisecond)
}

// register creates nodes/<name> with this incarnation's NodeInfo, only if
// the key does not exist, and returns the revision it was created at. A
// registration that exists belongs to another process and is attached to
// that process's lease: while the lease lives the process may be serving,
// and replacing its registration would get it removed from its group
// while it goes on answering reads. So register waits for the
// registration to vanish (the process exits, is fenced, or its lease
// expires) and fails with ErrNameInUse if it outlives the wait.
func (s *Session) register(ctx context.Context, wait time.Duration) (int64, error) {
	key := nodeKey(s.cluster, s.member.Name)
	val, err := json.Marshal(s.info)
	if err != nil {
		return 0, fmt.Errorf("coord: encode node info: %w", err)
	}
	var wctx context.Context
	for {
		resp, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(val), clientv3.WithLease(s.lease))).
			Else(clientv3.OpGet(key)).
			Commit()
		if err != nil {
			return 0, fmt.Errorf("coord: register %s: %w", s.member, err)
		}
		if resp.Succeeded {
			return resp.Header.Revision, nil
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue // gone between the compare and the read: try again
		}
		var holder NodeInfo
		_ = json.Unmarshal(kvs[0].Value, &holder) // an unreadable record is still a live registration
		if wctx == nil {
			wait = s.registerWait(ctx, wait, clientv3.LeaseID(kvs[0].Lease))
			var cancel context.CancelFunc
			wctx, cancel = context.WithTimeout(ctx, wait)
			defer cancel()
			s.log.Warn(fmt.Sprintf("waiting for the registration of %s held by incarnation %s (pid %d) to end",
				s.member.Name, holder.Incarnation, holder.Pid), "host", holder.Host, "up_to", wait)
		}
		if err := s.awaitVacant(wctx, key, resp.Header.Revision); err != nil {
			if ctx.Err() != nil {
				return 0, fmt.Errorf("coord: register %s: waiting for incarnation %s to end: %w", s.member, holder.Incarnation, ctx.Err())
			}
			return 0, nameInUse(s.member.Name, holder, wait)
		}
	}
}

// nameInUse is the error for a name whose registration outlived the wait:
// it tells the operator which process holds it and how to proceed.
func nameInUse(name string, holder NodeInfo, waited time.Duration) error {
	host := holder.Host
	if host == "" {
		host = "an unknown host"
	}
	return fmt.Errorf("%w: %s is registered by incarnation %s (pid %d on %s), whose lease was still renewed after %v: "+
		"another process runs under this name; stop it (or, if it is dead, run 'lockstep fence --name %s' on %s) and start this one again",
		ErrNameInUse, name, holder.Incarnation, holder.Pid, host, waited.Round(time.Millisecond), name, host)
}

// registerWait is how long to wait for the registration held under lease
// to end: wait if set, else three TTLs of the longer of the two leases.
func (s *Session) registerWait(ctx context.Context, wait time.Duration, lease clientv3.LeaseID) time.Duration {
	if wait > 0 {
		return wait
	}
	ttl := s.ttl
	if resp, err := s.cli.TimeToLive(ctx, lease); err == nil {
		ttl = max(ttl, time.Duration(resp.GrantedTTL)*time.Second)
	}
	return 3 * ttl
}

// awaitVacant returns nil once key is deleted after revision rev, or
// ctx's error if it ends first. It renews this session's own lease
// meanwhile, which has no renewal loop yet and must outlive the wait.
func (s *Session) awaitVacant(ctx context.Context, key string, rev int64) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watch := s.cli.Watch(wctx, key, clientv3.WithRev(rev+1))
	renew := time.NewTicker(s.ttl / 3)
	defer renew.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-renew.C:
			if err := s.renewOnce(ctx, s.ttl/3); err != nil && ctx.Err() == nil {
				s.log.Warn("coordinator lease renewal failed", "member", s.member.String(), "err", err)
			}
		case resp, ok := <-watch:
			if !ok || resp.Err() != nil {
				// Ended with ctx, or compacted or broken: then the caller
				// reads the key again.
				return ctx.Err()
			}
			for _, ev := range resp.Events {
				if ev.Type == mvccpb.DELETE {
					return nil
				}
			}
		}
	}
}

// watchRegistration ends the session, with ErrLeaseLost, as soon as
// nodes/<name> is deleted or attached to another lease: the lease was
// revoked (fenced) or expired, or the key was removed. A renewal would
// notice a revoked lease only up to TTL/3 later, and a removed key never,
// while the node went on serving as if it were still a member.
func (s *Session) watchRegistration(ctx context.Context, rev int64) {
	defer close(s.watchDone)
	key := nodeKey(s.cluster, s.member.Name)
	for {
		var lost bool
		if rev, lost = s.watchOwnKey(ctx, key, rev); !lost {
			// The watch broke (a compaction, the connection, or the
			// end): read the key for what it missed, then watch again.
			rev, lost = s.readOwnKey(ctx, key)
		}
		if lost {
			s.log.Warn("registration gone: no longer serving", "member", s.member.String())
			s.finish(fmt.Errorf("%w: %s is no longer registered under this lease", ErrLeaseLost, s.member))
			return
		}
		if ctx.Err() != nil || s.cli.Ctx().Err() != nil {
			return
		}
	}
}

// readOwnKey reads key until it succeeds or the session stops, and
// reports its revision and whether it is no longer this lease's.
func (s *Session) readOwnKey(ctx context.Context, key string) (int64, bool) {
	for ctx.Err() == nil && s.cli.Ctx().Err() == nil {
		g, err := s.cli.Get(ctx, key)
		if err == nil {
			return g.Header.Revision, len(g.Kvs) == 0 || g.Kvs[0].Lease != int64(s.lease)
		}
		t := time.NewTimer(s.ttl / 10)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	return 0, false
}

// watchOwnKey watches key after rev until an event shows it deleted or
// re-attached to another lease (lost), or the watch ends; it returns the
// last revision it saw.
func (s *Session) watchOwnKey(ctx context.Context, key string, rev int64) (int64, bool) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for resp := range s.cli.Watch(wctx, key, clientv3.WithRev(rev+1)) {
		if resp.Err() != nil {
			break
		}
		for _, ev := range resp.Events {
			if ev.Type == mvccpb.DELETE || ev.Kv.Lease != int64(s.lease) {
				return rev, true
			}
		}
		rev = max(rev, resp.Header.Revision)
	}
	return rev, false
}

// renewLoop renews the lease every TTL/3 until stopped or the lease is lost.
// A failed renewal is retried sooner; the fencing deadline keeps the node
// safe meanwhile.
func (s *Session) renewLoop(ctx context.Context) {
	defer close(s.loopDone)
	interval := s.ttl / 3
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.cli.Ctx().Done():
			s.finish(fmt.Errorf("%w: etcd client closed", ErrLeaseLost))
			return
		case <-timer.C:
		}
		err := s.renewOnce(ctx, interval)
		switch {
		case err == nil:
			timer.Reset(interval)
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			s.log.Warn("coordinator lease lost", "member", s.member.String(), "err", err)
			s.finish(fmt.Errorf("%w: %v", ErrLeaseLost, err))
			return
		default:
			if ctx.Err() == nil {
				s.log.Warn("coordinator lease renewal failed", "member", s.member.String(), "err", err)
			}
			timer.Reset(interval / 3)
		}
	}
}

// renewOnce sends one renewal and, on success, moves ValidUntil to the time
// read just before sending plus the granted TTL minus the margin. etcd
// restarts the lease's TTL when the request arrives, which is after it was
// sent, so the lease cannot expire before the new ValidUntil + margin.
func (s *Session) renewOnce(ctx context.Context, timeout time.Duration) error {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	sent := s.now()
	resp, err := s.cli.KeepAliveOnce(rctx, s.lease)
	if err != nil {
		return err
	}
	until := sent.Add(time.Duration(resp.TTL)*time.Second - s.margin)
	s.mu.Lock()
	if until.After(s.validUntil) {
		s.validUntil = until
	}
	s.mu.Unlock()
	return nil
}

// finish records why the session ended and closes Done, once.
func (s *Session) finish(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
		close(s.done)
	}
}

// stopRenewing ends the renewal goroutine without revoking the lease, as if
// the process had died: the lease then expires after its TTL. Close uses it,
// and tests use it to simulate a crash.
func (s *Session) stopRenewing() {
	s.stopLoop()
	<-s.loopDone
	<-s.watchDone
}

// ValidUntil is the fencing deadline: the local time read just before the
// last successful renewal was sent, plus the TTL, minus a margin for clock
// drift. The lease cannot have expired in etcd before then, so no other node
// can have been given this node's role; after it, the node must not serve
// reads or writes.
func (s *Session) ValidUntil() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.validUntil
}

// Valid reports whether the node may serve now: the session is open, the
// lease is not known lost, and the fencing deadline has not passed.
func (s *Session) Valid() bool {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err == nil && now.Before(s.validUntil)
}

// Done is closed when the session ends: the lease was lost for good (etcd
// no longer knows it, or the client was closed), or Close was called. After
// a lost lease the process must re-register as a new incarnation.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err is nil while the session runs; afterwards it wraps ErrLeaseLost or
// ErrSessionClosed.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// UpdateInfo republishes the node's status (state, role, epoch, applied,
// lag, addresses) under the same lease. Name and Incarnation always stay
// the session's. It fails with ErrLeaseLost if nodes/<name> is no longer
// attached to this session's lease (the lease expired or was revoked, or
// the key was removed), and then ends the session: the node must stop
// serving at once rather than when a renewal fails.
func (s *Session) UpdateInfo(ctx context.Context, info NodeInfo) error {
	info.Name, info.Incarnation = s.member.Name, s.member.Incarnation
	info.CreateRevision = 0
	val, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("coord: encode node info: %w", err)
	}
	key := nodeKey(s.cluster, s.member.Name)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(key), "=", s.lease)).
		Then(clientv3.OpPut(key, string(val), clientv3.WithLease(s.lease))).
		Commit()
	if err != nil {
		return fmt.Errorf("coord: update %s: %w", s.member, err)
	}
	if !resp.Succeeded {
		err := fmt.Errorf("%w: %s no longer registered under this lease", ErrLeaseLost, s.member)
		s.finish(err)
		return err
	}
	s.mu.Lock()
	s.info = info
	s.mu.Unlock()
	return nil
}

// Close leaves gracefully: it stops serving (Valid turns false), stops the
// renewals and revokes the lease, which deletes nodes/<name> at once so the
// reconfigurator removes the node without waiting for the TTL.
func (s *Session) Close(ctx context.Context) error {
	s.finish(ErrSessionClosed)
	s.stopRenewing()
	if _, err := s.cli.Revoke(ctx, s.lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("coord: revoke lease: %w", err)
	}
	return nil
}

// Info returns the NodeInfo last published.
func (s *Session) Info() NodeInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.info
}

// Member returns the node's name and incarnation.
func (s *Session) Member() Member { return s.member }

// Cluster returns the cluster name the session registered in.
func (s *Session) Cluster() string { return s.cluster }

// Group returns the replication group the session serves.
func (s *Session) Group() string { return s.group }

// LeaseID returns the etcd lease; keys written with it vanish with the node.
func (s *Session) LeaseID() clientv3.LeaseID { return s.lease }

// TTL returns the lease TTL etcd granted.
func (s *Session) TTL() time.Duration { return s.ttl }

// ListNodes returns every registered (live) node of the cluster, in
// registration order (NodeInfo.CreateRevision, which it fills in).
func ListNodes(ctx context.Context, cli *clientv3.Client, cluster string) ([]NodeInfo, error) {
	if err := validName("cluster", cluster); err != nil {
		return nil, err
	}
	resp, err := cli.Get(ctx, nodesPrefix(cluster), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("coord: list nodes: %w", err)
	}
	return decodeNodes(resp.Kvs, nodesPrefix(cluster))
}

// decodeNodes turns nodes/ keys into NodeInfos sorted by registration.
func decodeNodes(kvs []*mvccKV, prefix string) ([]NodeInfo, error) {
	nodes := make([]NodeInfo, 0, len(kvs))
	for _, kv := range kvs {
		var n NodeInfo
		if err := json.Unmarshal(kv.Value, &n); err != nil {
			return nil, fmt.Errorf("coord: decode %s: %w", kv.Key, err)
		}
		n.Name = strings.TrimPrefix(string(kv.Key), prefix)
		n.CreateRevision = kv.CreateRevision
		nodes = append(nodes, n)
	}
	sort.SliceStable(nodes, func(i, j int) bool { return nodes[i].CreateRevision < nodes[j].CreateRevision })
	return nodes, nil
}
