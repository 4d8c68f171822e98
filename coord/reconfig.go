package coord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

const (
	// resyncInterval is how often the leader re-plans without news, a safety
	// net under the watches.
	resyncInterval = time.Second
	// retryDelay paces retries after etcd errors.
	retryDelay = 200 * time.Millisecond
	// maxStepsPerRound bounds one round of plan-and-write; Plan converges in
	// a few steps, so hitting it means a conflict storm, retried next round.
	maxStepsPerRound = 16
)

// errNotLeader ends a leadership term: the election key is gone.
var errNotLeader = errors.New("lockstep: no longer reconfiguration leader")

// RunReconfigurator keeps s's group configured: it campaigns for the group's
// election and, while it leads, re-plans on every change to the registered
// nodes or the configuration (and every second as a safety net) and writes
// what Plan decides. Every node runs it; exactly one acts.
//
// The campaign uses a concurrency.Session bound to the node's own lease
// (renewed by s alone), so a dead node loses the leadership when its lease
// expires, and every read and write of a leader also requires its election
// key to still exist, so a deposed leader that has not noticed yet cannot
// write.
//
// Run at most one per session: campaigns with the same lease share one
// election key, so two would both lead; a second concurrent call fails with
// ErrInvalid.
//
// It returns nil when ctx ends, or the session's error (wrapping
// ErrLeaseLost or ErrSessionClosed) when s ends.
func RunReconfigurator(ctx context.Context, cli *clientv3.Client, s *Session, opts PlanOptions) error {
	if !s.reconfiguring.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: a reconfigurator already runs for %s", ErrInvalid, s.member)
	}
	defer s.reconfiguring.Store(false)
	r := &reconfigurator{
		cli: cli, s: s, opts: opts,
		log:       s.log.With("group", s.group, "member", s.member.String()),
		cfgKey:    configKey(s.cluster, s.group),
		pauseKey:  pauseKey(s.cluster, s.group),
		nodesPfx:  nodesPrefix(s.cluster),
		electPfx:  electionPrefix(s.cluster, s.group),
		candidate: s.member.String(),
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.Done():
			return s.Err()
		default:
		}
		if err := r.term(ctx); err != nil && ctx.Err() == nil && s.Err() == nil {
			r.log.Warn("reconfigurator: retrying", "err", err)
			waitRetry(ctx)
		}
	}
}

type reconfigurator struct {
	cli       *clientv3.Client
	s         *Session
	opts      PlanOptions
	log       *slog.Logger
	cfgKey    string
	pauseKey  string
	nodesPfx  string
	paused    bool // the last snapshot found the group paused (logged once)
	electPfx  string
	candidate string
}

// term campaigns once and, if elected, leads until leadership, the session
// or ctx ends.
func (r *reconfigurator) term(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs, err := concurrency.NewSession(r.cli, concurrency.WithLease(r.s.LeaseID()), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("coord: election session: %w", err)
	}
	// Stop the concurrency session's own keep-alive at once (Orphan, never
	// Close: Close would revoke the node's lease). The lease stays owned by
	// r.s, whose fenced renewals are then its only ones (but for at most one
	// the keep-alive may send as it starts): a second steady keep-alive would
	// keep a crashed node's lease alive up to a renewal interval longer and
	// so delay failover. The election needs only the client and the lease id.
	cs.Orphan()
	go func() {
		select {
		case <-r.s.Done():
		case <-ctx.Done():
		}
		cancel()
	}()
	el := concurrency.NewElection(cs, r.electPfx)
	if err := el.Campaign(ctx, r.candidate); err != nil {
		return fmt.Errorf("coord: campaign: %w", err)
	}
	r.log.Info("reconfigurator: elected leader")
	err = r.lead(ctx, clientv3.Compare(clientv3.CreateRevision(el.Key()), "=", el.Rev()))
	if r.s.Err() == nil {
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), retryDelay)
		_ = el.Resign(rctx)
		rcancel()
	}
	r.log.Info("reconfigurator: leadership ended", "err", err)
	if errors.Is(err, errNotLeader) || ctx.Err() != nil {
		return nil
	}
	return err
}

// lead watches nodes and the configuration and re-plans on every change,
// until leadership or ctx ends. isLeader guards every read and write.
func (r *reconfigurator) lead(ctx context.Context, isLeader clientv3.Cmp) error {
	ticker := time.NewTicker(resyncInterval)
	defer ticker.Stop()
	for ctx.Err() == nil {
		rev, err := r.round(ctx, isLeader)
		if err != nil {
			return err
		}
		if err := r.follow(ctx, isLeader, rev, ticker.C); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// follow watches from rev+1 and runs a round on each batch of news or tick.
// It returns nil when the watches break, so lead re-reads and re-watches.
func (r *reconfigurator) follow(ctx context.Context, isLeader clientv3.Cmp, rev int64, tick <-chan time.Time) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	nodesCh := r.cli.Watch(wctx, r.nodesPfx, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	cfgCh := r.cli.Watch(wctx, r.cfgKey, clientv3.WithRev(rev+1))
	pauseCh := r.cli.Watch(wctx, r.pauseKey, clientv3.WithRev(rev+1))
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case resp, ok := <-nodesCh:
			if !ok || resp.Err() != nil {
				return nil
			}
		case resp, ok := <-cfgCh:
			if !ok || resp.Err() != nil {
				return nil
			}
		case resp, ok := <-pauseCh:
			if !ok || resp.Err() != nil {
				return nil
			}
		case <-tick:
		}
		if _, err := r.round(ctx, isLeader); err != nil {
			return err
		}
	}
}

// round plans and writes until Plan has nothing more to change, and returns
// the revision of the last snapshot read.
func (r *reconfigurator) round(ctx context.Context, isLeader clientv3.Cmp) (int64, error) {
	for range maxStepsPerRound {
		cur, nodes, rev, paused, err := r.snapshot(ctx, isLeader)
		if err != nil {
			return 0, err
		}
		if paused != r.paused {
			r.paused = paused
			r.log.Info("group automation", "paused", paused)
		}
		if paused {
			return rev, nil
		}
		next, changed, reason := Plan(cur, nodes, r.opts)
		if !changed {
			return rev, nil
		}
		var prev Config
		if cur != nil {
			prev = *cur
		}
		written, err := casConfig(ctx, r.cli, r.s.cluster, r.s.group, prev, next, reason, isLeader)
		if errors.Is(err, ErrConflict) {
			continue // lost to a concurrent write or lost leadership; re-read
		}
		if err != nil {
			return 0, err
		}
		r.log.Info("reconfigured", "epoch", written.Epoch, "members", memberList(written.Members),
			"joining", written.Joining, "reason", reason)
	}
	return 0, fmt.Errorf("coord: configuration still changing after %d steps", maxStepsPerRound)
}

// snapshot reads the configuration and the live nodes at one revision, if
// this node still leads.
// It also reports whether an operator paused the group (see Pause).
func (r *reconfigurator) snapshot(ctx context.Context, isLeader clientv3.Cmp) (*Config, []NodeInfo, int64, bool, error) {
	resp, err := r.cli.Txn(ctx).If(isLeader).
		Then(clientv3.OpGet(r.cfgKey), clientv3.OpGet(r.nodesPfx, clientv3.WithPrefix()), clientv3.OpGet(r.pauseKey)).
		Commit()
	if err != nil {
		return nil, nil, 0, false, fmt.Errorf("coord: read group state: %w", err)
	}
	if !resp.Succeeded {
		return nil, nil, 0, false, errNotLeader
	}
	var cur *Config
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		c, err := decodeConfig(kvs[0])
		if err != nil {
			return nil, nil, 0, false, err
		}
		cur = &c
	}
	nodes, err := decodeNodes(resp.Responses[1].GetResponseRange().Kvs, r.nodesPfx)
	if err != nil {
		return nil, nil, 0, false, err
	}
	paused := len(resp.Responses[2].GetResponseRange().Kvs) > 0
	return cur, nodes, resp.Header.Revision, paused, nil
}

// waitRetry pauses before retrying a failed etcd call, or less if ctx ends.
func waitRetry(ctx context.Context) {
	t := time.NewTimer(retryDelay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
