package coord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Registrar is one node process's registration with the coordinator, as
// single steps with no goroutine or timer of its own: grant a lease
// (NewRegistrar), register the name (Register), renew (Renew), notice the
// registration gone (Observe, Check), publish status (UpdateInfo), leave
// (Close). Session drives it with goroutines on etcd; the whole-node
// simulation drives the same code from its event loop on a simulated
// coordinator, so the rules that keep a name to one live process are
// tested under seeded faults, not only against a real etcd.
//
// All methods are safe for concurrent use.
type Registrar struct {
	b       Backend
	cluster string
	group   string
	member  Member
	key     string
	lease   int64
	ttl     time.Duration
	margin  time.Duration
	now     func() time.Time
	log     *slog.Logger
	wait    time.Duration // SessionConfig.RegisterWait
	done    chan struct{}

	mu         sync.Mutex
	info       NodeInfo
	validUntil time.Time
	err        error // why done is closed
}

// Holder is the registration found under a name that Register could not
// take: another process's, attached to its lease.
type Holder struct {
	Info     NodeInfo
	Lease    int64
	Revision int64 // the revision the registration was read at
}

// NewRegistrar validates cfg and grants the lease. The lease is not yet
// renewed and the name not yet registered: call Register, and Renew every
// TTL/3 from then on.
func NewRegistrar(ctx context.Context, b Backend, cfg SessionConfig) (*Registrar, error) {
	if err := validateSessionConfig(&cfg); err != nil {
		return nil, err
	}
	sent := cfg.Now()
	id, ttl, err := b.Grant(ctx, cfg.TTL)
	if err != nil {
		return nil, fmt.Errorf("coord: grant lease: %w", err)
	}
	r := &Registrar{
		b: b, cluster: cfg.Cluster, group: cfg.Group, member: cfg.Node.Member(),
		key: nodeKey(cfg.Cluster, cfg.Node.Name), lease: id,
		ttl: ttl, margin: FencingMargin(ttl), now: cfg.Now, log: cfg.Logger, wait: cfg.RegisterWait,
		done: make(chan struct{}), info: cfg.Node,
	}
	r.validUntil = sent.Add(r.ttl - r.margin)
	return r, nil
}

// Register tries once to create nodes/<name> with this incarnation's
// NodeInfo, only if the key does not exist, and returns the revision it
// was created at. A registration that exists belongs to another process
// and is attached to that process's lease: while the lease lives the
// process may be serving, and replacing its registration would get it
// removed from its group while it goes on answering reads. So Register
// then returns the holder instead, and the caller waits for the
// registration to vanish (the process exits, is fenced, or its lease
// expires) and tries again, up to RegisterWait.
func (r *Registrar) Register(ctx context.Context) (int64, *Holder, error) {
	val, err := json.Marshal(r.Info())
	if err != nil {
		return 0, nil, fmt.Errorf("coord: encode node info: %w", err)
	}
	res, err := r.b.Txn(ctx, Txn{
		If:   []Cmp{CmpAbsent(r.key)},
		Then: []Op{{Key: r.key, Value: val, Lease: r.lease}},
		Else: []Op{{Key: r.key, Get: true}},
	})
	if errors.Is(err, ErrLeaseNotFound) {
		// The lease expired while the name was held (the wait outlived
		// it, cut off from the coordinator): a new incarnation must start.
		r.finish(fmt.Errorf("%w: %v", ErrLeaseLost, err))
	}
	if err != nil {
		return 0, nil, fmt.Errorf("coord: register %s: %w", r.member, err)
	}
	if res.Succeeded {
		return res.Revision, nil, nil
	}
	h := &Holder{Revision: res.Revision}
	if len(res.Got) > 0 && res.Got[0] != nil {
		h.Lease = res.Got[0].Lease
		_ = json.Unmarshal(res.Got[0].Value, &h.Info) // an unreadable record is still a live registration
	}
	return 0, h, nil
}

// RegisterWait is how long to wait for h's registration to end before
// giving up with NameInUse: SessionConfig.RegisterWait if set, else three
// TTLs of the longer of the two leases.
func (r *Registrar) RegisterWait(ctx context.Context, h *Holder) time.Duration {
	if r.wait > 0 {
		return r.wait
	}
	ttl := r.ttl
	if granted, err := r.b.GrantedTTL(ctx, h.Lease); err == nil {
		ttl = max(ttl, granted)
	}
	return 3 * ttl
}

// NameInUse is the error for a name whose registration outlived the wait:
// it tells the operator which process holds it and how to proceed.
func (r *Registrar) NameInUse(h *Holder, waited time.Duration) error {
	holder := h.Info
	host := holder.Host
	if host == "" {
		host = "an unknown host"
	}
	name := r.member.Name
	return fmt.Errorf("%w: %s is registered by incarnation %s (pid %d on %s), whose lease was still renewed after %v: "+
		"another process runs under this name; stop it (or, if it is dead, run 'lockstep fence --name %s' on %s) and start this one again",
		ErrNameInUse, name, holder.Incarnation, holder.Pid, host, waited.Round(time.Millisecond), name, host)
}

// Renew sends one renewal and, on success, moves ValidUntil to the time
// read just before sending plus the granted TTL minus the margin. The
// coordinator restarts the lease's TTL when the request arrives, which is
// after it was sent, so the lease cannot expire before the new ValidUntil
// plus the margin. A lease the coordinator no longer knows ends the
// registration with ErrLeaseLost; any other failure is the caller's to
// retry, sooner, while the fencing deadline keeps the node safe.
func (r *Registrar) Renew(ctx context.Context) error {
	sent := r.now()
	ttl, err := r.b.KeepAlive(ctx, r.lease)
	if errors.Is(err, ErrLeaseNotFound) {
		r.log.Warn("coordinator lease lost", "member", r.member.String(), "err", err)
		r.finish(fmt.Errorf("%w: %v", ErrLeaseLost, err))
		return r.Err()
	}
	if err != nil {
		return err
	}
	until := sent.Add(ttl - r.margin)
	r.mu.Lock()
	if until.After(r.validUntil) {
		r.validUntil = until
	}
	r.mu.Unlock()
	return nil
}

// Observe takes the registration as a watch or a read shows it (nil:
// deleted) and ends the registration, with ErrLeaseLost, if it is no
// longer attached to this lease: the lease was revoked (fenced) or
// expired, or the key was removed or taken. A renewal would notice a
// revoked lease only up to TTL/3 later, and a removed key never, while the
// node went on serving as if it were still a member. It reports whether
// the registration is lost.
func (r *Registrar) Observe(rec *Record) bool {
	if rec != nil && rec.Lease == r.lease {
		return false
	}
	r.log.Warn("registration gone: no longer serving", "member", r.member.String())
	r.finish(fmt.Errorf("%w: %s is no longer registered under this lease", ErrLeaseLost, r.member))
	return true
}

// Check reads the registration, Observes it, and returns the revision
// read at; a failed read changes nothing.
func (r *Registrar) Check(ctx context.Context) (rev int64, lost bool, err error) {
	res, err := r.b.Txn(ctx, Txn{Then: []Op{{Key: r.key, Get: true}}})
	if err != nil {
		return 0, false, err
	}
	var rec *Record
	if len(res.Got) > 0 {
		rec = res.Got[0]
	}
	return res.Revision, r.Observe(rec), nil
}

// UpdateInfo republishes the node's status (state, role, epoch, applied,
// lag, addresses) under the same lease. Name and Incarnation always stay
// the registration's. It fails with ErrLeaseLost if nodes/<name> is no
// longer attached to this lease (the lease expired or was revoked, or the
// key was removed), and then ends the registration: the node must stop
// serving at once rather than when a renewal fails.
func (r *Registrar) UpdateInfo(ctx context.Context, info NodeInfo) error {
	info.Name, info.Incarnation = r.member.Name, r.member.Incarnation
	info.CreateRevision = 0
	val, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("coord: encode node info: %w", err)
	}
	res, err := r.b.Txn(ctx, Txn{
		If:   []Cmp{CmpLease(r.key, r.lease)},
		Then: []Op{{Key: r.key, Value: val, Lease: r.lease}},
	})
	if err != nil {
		return fmt.Errorf("coord: update %s: %w", r.member, err)
	}
	if !res.Succeeded {
		err := fmt.Errorf("%w: %s no longer registered under this lease", ErrLeaseLost, r.member)
		r.finish(err)
		return err
	}
	r.mu.Lock()
	r.info = info
	r.mu.Unlock()
	return nil
}

// Close ends the registration (Valid turns false) and revokes the lease,
// which deletes nodes/<name> at once so the reconfigurator removes the
// node without waiting for the TTL.
func (r *Registrar) Close(ctx context.Context) error {
	r.finish(ErrSessionClosed)
	if err := r.b.Revoke(ctx, r.lease); err != nil {
		return fmt.Errorf("coord: revoke lease: %w", err)
	}
	return nil
}

// finish records why the registration ended and closes Done, once.
func (r *Registrar) finish(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
		close(r.done)
	}
}

// ValidUntil is the fencing deadline: the local time read just before the
// last successful renewal was sent, plus the TTL, minus a margin for clock
// drift. The lease cannot have expired in the coordinator before then, so
// no other node can have been given this node's role; after it, the node
// must not serve reads or writes.
func (r *Registrar) ValidUntil() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.validUntil
}

// Valid reports whether the node may serve now: the registration is open,
// the lease is not known lost, and the fencing deadline has not passed.
func (r *Registrar) Valid() bool {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err == nil && now.Before(r.validUntil)
}

// Done is closed when the registration ends: the lease was lost for good,
// or Close was called. After a lost lease the process must re-register as
// a new incarnation.
func (r *Registrar) Done() <-chan struct{} { return r.done }

// Err is nil while the registration lasts; afterwards it wraps
// ErrLeaseLost or ErrSessionClosed.
func (r *Registrar) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Info returns the NodeInfo last published.
func (r *Registrar) Info() NodeInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.info
}

// Member returns the node's name and incarnation.
func (r *Registrar) Member() Member { return r.member }

// Cluster returns the cluster name registered in.
func (r *Registrar) Cluster() string { return r.cluster }

// Group returns the replication group the node serves.
func (r *Registrar) Group() string { return r.group }

// Key returns the registration's key, nodes/<name>.
func (r *Registrar) Key() string { return r.key }

// Lease returns the lease id; keys written with it vanish with the node.
func (r *Registrar) Lease() int64 { return r.lease }

// TTL returns the lease TTL the coordinator granted.
func (r *Registrar) TTL() time.Duration { return r.ttl }
