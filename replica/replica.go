// Package replica is the runtime that runs a replication protocol core on
// a real node: it feeds the pure core (protocol/chain or protocol/pb,
// behind the small protocolCore interface) with messages from
// the transport, ticks from a clock and configurations from the etcd
// coordinator, and carries out the core's effects: sending messages,
// applying entries to the state machine, releasing client replies at the
// commit point, and fetching or serving snapshots for joining replicas.
//
// It implements server.Backend, so the RESP front end is the same one a
// standalone node uses. Clients may talk to any replica: writes are
// forwarded to the head or primary, reads to the tail or primary.
package replica

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/dedup"
	"github.com/lockstep/lockstep/storage"
)

// Errors a replica reports, wrapped with %w.
var (
	// ErrNotServing: the replica cannot answer now (no valid lease, not in
	// the configuration, or no head/tail reachable). Clients retry.
	ErrNotServing = errors.New("lockstep: replica not serving")
	// ErrOutcomeUnknown: a write was applied locally but the replica lost
	// its role before the write committed; it may or may not survive.
	ErrOutcomeUnknown = errors.New("lockstep: write outcome unknown after reconfiguration")
	// ErrFailed: a local storage error stopped the replica.
	ErrFailed = errors.New("lockstep: replica failed")
	// ErrWrongProtocol: the group runs another protocol than this replica.
	ErrWrongProtocol = errors.New("lockstep: group runs another replication protocol")
)

// Sender delivers an encoded protocol message to a peer by name. It must
// not block; a message it cannot queue is dropped (the core retransmits).
type Sender interface {
	Send(to string, payload []byte) bool
}

// SnapshotFetcher opens a snapshot stream from a peer.
type SnapshotFetcher interface {
	OpenStream(ctx context.Context, to string, req []byte) (io.ReadCloser, error)
}

// Lease tells whether this node's coordinator lease is still valid.
type Lease interface {
	Valid() bool
}

// Options assemble a replica.
type Options struct {
	Name        string
	Incarnation string
	Machine     *dedup.Machine
	Store       storage.Store
	// Protocol is the replication protocol the replica runs (chain if
	// empty). It must be the group's: a configuration naming another
	// stops the replica with ErrWrongProtocol.
	Protocol string
	Core     CoreOptions
	Tick     time.Duration // core tick; default 10ms
	// WaitTimeout bounds how long a write's reply waits for commit; the
	// client then gets an error (outcome unknown). Default 30s.
	WaitTimeout time.Duration
	Now         func() time.Time
	Logger      *slog.Logger
}

// Replica runs one replica of a group.
type Replica struct {
	opts  Options
	sm    *dedup.Machine
	store storage.Store
	log   *slog.Logger

	send    Sender
	fetch   SnapshotFetcher
	lease   Lease
	routes  *routes
	forward *forwarder

	// mu guards the core and serializes Prepare, Apply and Restore; reads
	// of the state machine take it shared.
	mu     sync.RWMutex
	core   protocolCore
	env    env
	cfg    coord.Config
	member bool // my incarnation is the configured one for my name

	// headApplied is the last proposal the head applied but has not yet
	// reported to the core (guarded by mu); see flushHeadApplied.
	headApplied uint64
	// early holds messages from epochs not installed yet (guarded by mu).
	early earlyMessages

	role   atomic.Uint32 // Role
	epoch  atomic.Uint64
	commit commitPoint

	runCtx atomic.Pointer[context.Context]
	// readyMu serializes taking and carrying out the core's effects, so
	// messages leave in the order the core produced them whichever
	// goroutine (run loop, transport reader) handles them.
	readyMu  sync.Mutex
	sendBuf  []byte // guarded by readyMu
	configs  chan coord.Config
	kick     chan struct{}
	fetching fetchState
	kept     keptSnapshots
	failed   atomic.Pointer[error]
	failedCh chan struct{}
	stats    stats
}

// New builds a replica; call Attach, then Run.
func New(opts Options) (*Replica, error) {
	if opts.Machine == nil || opts.Store == nil || opts.Name == "" {
		return nil, fmt.Errorf("lockstep: replica needs a name, a machine and a store")
	}
	if opts.Tick <= 0 {
		opts.Tick = 10 * time.Millisecond
	}
	if opts.WaitTimeout <= 0 {
		opts.WaitTimeout = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	core, err := newCore(opts.Protocol, opts.Name, opts.Core, opts.Machine)
	if err != nil {
		return nil, err
	}
	r := &Replica{
		opts:    opts,
		sm:      opts.Machine,
		store:   opts.Store,
		log:     opts.Logger,
		core:    core,
		env:     newEnv(),
		configs: make(chan coord.Config, 16),
		kick:    make(chan struct{}, 1),
		routes:  newRoutes(),

		failedCh: make(chan struct{}),
	}
	r.commit.init()
	return r, nil
}

// Attach wires the replica to its transport, snapshot source and lease.
// They are created after the replica because the transport delivers into it.
func (r *Replica) Attach(send Sender, fetch SnapshotFetcher, lease Lease) {
	r.send, r.fetch, r.lease = send, fetch, lease
	r.forward = newForwarder(r.opts.Name+"/"+r.opts.Incarnation, r.routes, r.log)
}

// Deliver steps an inbound protocol message on the calling goroutine, the
// transport's reader for that peer. Its effects wait for BurstDone, so a
// burst of messages that arrived together is applied, forwarded and acked
// as one batch: one message downstream and one ack upstream instead of
// one per update.
func (r *Replica) Deliver(from string, payload []byte) {
	r.mu.Lock()
	err := r.core.Step(payload)
	if errors.Is(err, errFutureEpoch) {
		r.early.keep(payload)
	}
	r.mu.Unlock()
	if err != nil {
		r.log.Debug("message refused", "from", from, "err", err)
	}
}

// BurstDone carries out the effects of the messages Deliver stepped, on
// the same goroutine. Doing it here rather than in the run loop saves a
// goroutine switch on every hop.
func (r *Replica) BurstDone(string) { r.handleReady(r.ctx()) }

// ctx is the context Run was started with, for work Deliver starts.
func (r *Replica) ctx() context.Context {
	if c := r.runCtx.Load(); c != nil {
		return *c
	}
	return context.Background()
}

// SetConfig hands the replica a configuration from the coordinator.
func (r *Replica) SetConfig(cfg coord.Config) { r.configs <- cfg }

// SetNodes updates where peers are (client addresses for forwarding).
func (r *Replica) SetNodes(nodes []coord.NodeInfo) { r.routes.setNodes(nodes) }

// Err reports why the replica stopped, or nil.
func (r *Replica) Err() error {
	if p := r.failed.Load(); p != nil {
		return *p
	}
	return nil
}

func (r *Replica) fail(err error) error {
	err = fmt.Errorf("%w: %w", ErrFailed, err)
	if r.failed.CompareAndSwap(nil, &err) {
		r.log.Error("replica stopped", "err", err)
		r.commit.fail(err)
		close(r.failedCh)
	}
	return *r.failed.Load()
}

// Failed is closed when the replica stops on a local error. The process
// must then leave the cluster (its lease must end), or its neighbours
// would wait on it forever.
func (r *Replica) Failed() <-chan struct{} { return r.failedCh }

// Role is the replica's current role.
func (r *Replica) Role() Role { return Role(r.role.Load()) }

// Protocol is the replication protocol the replica runs.
func (r *Replica) Protocol() string { return r.core.Protocol() }

// Epoch is the configuration epoch the replica runs in.
func (r *Replica) Epoch() uint64 { return r.epoch.Load() }

// Run drives the core until ctx ends.
func (r *Replica) Run(ctx context.Context) {
	r.runCtx.Store(&ctx)
	t := time.NewTicker(r.opts.Tick)
	defer t.Stop()
	timeout := r.errWaitTimeout()
	closer, epochs := r.epochTicker()
	for {
		select {
		case <-ctx.Done():
			r.commit.fail(ErrNotServing)
			return
		case cfg := <-r.configs:
			r.applyConfig(cfg)
		case <-r.kick:
			// Let writers that are already runnable propose too, so one
			// batch carries them all: under load this turns one message
			// per write into one per burst of writes, for a few
			// microseconds of latency.
			runtime.Gosched()
			r.mu.Lock()
			r.flushHeadAppliedLocked()
			if closer != nil && closer.dirtyPastBound() {
				r.closeEpochLocked(closer)
			}
			r.mu.Unlock()
		case <-epochs:
			r.mu.Lock()
			r.closeEpochLocked(closer)
			r.mu.Unlock()
		case now := <-t.C:
			r.mu.Lock()
			r.core.Tick()
			r.mu.Unlock()
			r.commit.expire(now, timeout)
		}
		r.handleReady(ctx)
	}
}

// epochTicker returns the core's epoch closer and a channel that ticks
// every checkpoint interval, or nils for protocols without epochs.
func (r *Replica) epochTicker() (epochCloser, <-chan time.Time) {
	closer, ok := r.core.(epochCloser)
	if !ok {
		return nil, nil
	}
	every := r.opts.Core.CheckpointInterval
	if every <= 0 {
		every = DefaultCheckpointInterval
	}
	return closer, time.NewTicker(every).C
}

// closeEpochLocked makes the open epoch a checkpoint; a local error stops
// the replica (fail takes no lock of ours).
func (r *Replica) closeEpochLocked(closer epochCloser) {
	r.flushHeadAppliedLocked()
	if err := closer.closeEpoch(); err != nil {
		r.fail(err)
	}
}

// flushHeadAppliedLocked tells the core about the head's own applied
// proposals, which lets it stream them downstream in one batch.
func (r *Replica) flushHeadAppliedLocked() {
	if r.headApplied > 0 {
		r.core.Applied(r.headApplied)
		r.headApplied = 0
	}
}

func (r *Replica) kickLoop() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}
