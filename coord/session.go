package coord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
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

// Session is a Registrar on etcd driven by goroutines: one renews the lease
// every TTL/3, one watches the registration. It is the failure detector
// (crash = the lease expires) and the basis of fencing (ValidUntil). All
// methods are safe for concurrent use.
type Session struct {
	*Registrar
	cli *clientv3.Client

	stopLoop  context.CancelFunc // ends renewals without revoking
	loopDone  chan struct{}
	watchDone chan struct{}

	reconfiguring atomic.Bool // a RunReconfigurator is using the session
}

// NewSession grants a lease, registers cfg.Node under nodes/<name> with it
// and starts renewing it and watching the registration. ctx bounds only
// this setup; the session lives until Close or until its lease is lost.
// A name registered by another process is not taken over while that
// process's lease lives (see Registrar.Register): NewSession waits up to
// cfg.RegisterWait for it to end, then fails with ErrNameInUse. A process
// that exited cleanly, or was fenced after it died, left no registration,
// so its restart registers at once as a new incarnation (with a new
// registration order, NodeInfo.CreateRevision).
func NewSession(ctx context.Context, cli *clientv3.Client, cfg SessionConfig) (*Session, error) {
	reg, err := NewRegistrar(ctx, EtcdBackend{Cli: cli}, cfg)
	if err != nil {
		return nil, err
	}
	s := &Session{Registrar: reg, cli: cli, loopDone: make(chan struct{}), watchDone: make(chan struct{})}
	rev, err := s.register(ctx)
	if err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_ = s.b.Revoke(rctx, s.lease)
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

// register Registers the name, waiting while another process's
// registration holds it, and returns the revision it was created at.
func (s *Session) register(ctx context.Context) (int64, error) {
	var wctx context.Context
	var wait time.Duration
	for {
		rev, h, err := s.Register(ctx)
		if err != nil || h == nil {
			return rev, err
		}
		if wctx == nil {
			wait = s.RegisterWait(ctx, h)
			var cancel context.CancelFunc
			wctx, cancel = context.WithTimeout(ctx, wait)
			defer cancel()
			s.log.Warn(fmt.Sprintf("waiting for the registration of %s held by incarnation %s (pid %d) to end",
				s.member.Name, h.Info.Incarnation, h.Info.Pid), "host", h.Info.Host, "up_to", wait)
		}
		if err := s.awaitVacant(wctx, s.key, h.Revision); err != nil {
			if ctx.Err() != nil {
				return 0, fmt.Errorf("coord: register %s: waiting for incarnation %s to end: %w", s.member, h.Info.Incarnation, ctx.Err())
			}
			return 0, s.NameInUse(h, wait)
		}
	}
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

// watchRegistration Observes every change of nodes/<name>, so the session
// ends, with ErrLeaseLost, as soon as the key is deleted or attached to
// another lease.
func (s *Session) watchRegistration(ctx context.Context, rev int64) {
	defer close(s.watchDone)
	for {
		var lost bool
		if rev, lost = s.watchOwnKey(ctx, rev); !lost {
			// The watch broke (a compaction, the connection, or the
			// end): read the key for what it missed, then watch again.
			rev, lost = s.readOwnKey(ctx)
		}
		if lost || ctx.Err() != nil || s.cli.Ctx().Err() != nil {
			return
		}
	}
}

// readOwnKey Checks the registration until a read succeeds or the session
// stops, and returns the revision read at and whether it is lost.
func (s *Session) readOwnKey(ctx context.Context) (int64, bool) {
	for ctx.Err() == nil && s.cli.Ctx().Err() == nil {
		rev, lost, err := s.Check(ctx)
		if err == nil {
			return rev, lost
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

// watchOwnKey watches the registration after rev until an event shows it
// lost, or the watch ends; it returns the last revision it saw.
func (s *Session) watchOwnKey(ctx context.Context, rev int64) (int64, bool) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for resp := range s.cli.Watch(wctx, s.key, clientv3.WithRev(rev+1)) {
		if resp.Err() != nil {
			break
		}
		for _, ev := range resp.Events {
			var rec *Record
			if ev.Type != mvccpb.DELETE {
				rec = &Record{Value: ev.Kv.Value, Lease: ev.Kv.Lease, CreateRevision: ev.Kv.CreateRevision}
			}
			if s.Observe(rec) {
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
		case errors.Is(err, ErrLeaseLost):
			return
		default:
			if ctx.Err() == nil {
				s.log.Warn("coordinator lease renewal failed", "member", s.member.String(), "err", err)
			}
			timer.Reset(interval / 3)
		}
	}
}

// renewOnce is one Renew bounded by timeout.
func (s *Session) renewOnce(ctx context.Context, timeout time.Duration) error {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return s.Renew(rctx)
}

// stopRenewing ends the renewal goroutine without revoking the lease, as if
// the process had died: the lease then expires after its TTL. Close uses it,
// and tests use it to simulate a crash.
func (s *Session) stopRenewing() {
	s.stopLoop()
	<-s.loopDone
	<-s.watchDone
}

// Close leaves gracefully: it stops serving (Valid turns false), stops the
// renewals and revokes the lease, which deletes nodes/<name> at once so the
// reconfigurator removes the node without waiting for the TTL.
func (s *Session) Close(ctx context.Context) error {
	s.finish(ErrSessionClosed)
	s.stopRenewing()
	return s.Registrar.Close(ctx)
}

// LeaseID returns the etcd lease; keys written with it vanish with the node.
func (s *Session) LeaseID() clientv3.LeaseID { return clientv3.LeaseID(s.lease) }

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
