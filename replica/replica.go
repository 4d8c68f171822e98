// Package replica is the runtime that runs a replication protocol core on
// a real node: it feeds the pure core (protocol/chain, protocol/pb or
// protocol/checkpoint, through the one contract protocol.Core) with
// messages from the transport, ticks from a clock and configurations from
// the etcd coordinator, and carries out the core's effects: sending
// messages, applying entries to the state machine, closing epochs,
// releasing client replies at the commit point, and fetching or serving
// snapshots for joining replicas. Nothing in it depends on which protocol
// runs: where the protocols differ, the core's Status says how.
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
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/dedup"
	"github.com/lockstep/lockstep/protocol"
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
	// ErrStorage: the store failed under the replica: it could not make
	// applied state durable (a failed fsync, a full disk), or could not
	// read or change it. The replica stops rather than acknowledge a
	// write it may not hold, or answer from state it cannot read.
	ErrStorage = errors.New("lockstep: storage cannot persist writes")
	// ErrStaleState: the replica kept its state across a restart, but the
	// group was re-formed without it (see Options.Recovered).
	ErrStaleState = errors.New("lockstep: kept state no longer belongs to the group")
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
	// Cluster and Group name what the replica belongs to, for the header
	// of a backup; they may be empty.
	Cluster string
	Group   string
	Machine *dedup.Machine
	Store   storage.Store
	// Protocol is the replication protocol the replica runs (chain if
	// empty). It must be the group's: a configuration naming another
	// stops the replica with ErrWrongProtocol.
	Protocol string
	Core     CoreOptions
	Tick     time.Duration // core tick; default 10ms
	// WaitTimeout bounds how long a write's reply waits for commit; the
	// client then gets an error (outcome unknown). Default 30s.
	WaitTimeout time.Duration
	// ForwardBudget bounds how long a forwarded request waits, across
	// retries, for a head or tail to answer. Default 15s; in-process
	// tests shorten it so a refused request fails in milliseconds.
	ForwardBudget time.Duration
	Now           func() time.Time
	Logger        *slog.Logger

	// Rand is the source of the randomness Prepare records on the head
	// (nil: one seeded from the runtime's). A simulation passes its own,
	// so that a seed replays exactly.
	Rand *rand.Rand
	// ForwardPassword is what the forwarder sends with AUTH on each
	// connection it opens to the replica that orders writes or answers
	// reads: the group's --requirepass, which every node must share
	// (empty: none). A client authenticates with the node it is connected
	// to, and that node forwards its commands as the group's own
	// identity.
	ForwardPassword string
	// Forward, when set, replaces the forwarder that sends requests this
	// replica cannot answer to the head or tail over TCP.
	Forward Forwarder
	// Spawn starts background work, a snapshot fetch (nil: a goroutine).
	// A simulation runs it as one of its own events.
	Spawn func(func())
	// NoWindowWait makes a write that finds the replication window full
	// fail at once with ErrNotServing instead of waiting for room: a
	// simulation drives the replica on one goroutine and cannot block.
	NoWindowWait bool
	// Sleep waits between the attempts of a snapshot transfer (nil: a
	// timer). A simulation cannot wait inside an event: its Sleep fails,
	// and the transfer is retried as the runtime retries a failed one.
	Sleep func(ctx context.Context, d time.Duration) error

	// SyncBeforeSend makes the replica sync its store before it sends
	// anything or publishes a commit point, so every write it passes on
	// or acknowledges is on stable storage first: what a replica sends
	// downstream (entries, a checkpoint), what it acks upstream, and what
	// commits (a reply released) is durable here. Set it with a durable
	// store and --fsync always; it is the durability contract of
	// docs/ARCHITECTURE.md. A failed sync fails the replica: it must
	// never acknowledge a write it could not persist.
	SyncBeforeSend bool
	// Recovered means the store holds state kept from an earlier process
	// of this node (coord.KeepData decided so after a total outage). The
	// core counts as restarted (CoreOptions.Restarted); reads that gate
	// on the commit point wait until it reaches the kept state, some of
	// which may never have been acknowledged; and if the group is
	// re-formed without this process, so that it is made a joiner
	// instead, the replica fails with ErrStaleState: its state may hold
	// writes the group never committed, and it must start again empty.
	Recovered bool
	// Committed means the store holds state this node kept from a clean
	// stop (coord.KeepClean): all committed, so a prefix of the group's
	// history. The replica joins on it and catches up from the ordering
	// replica's retained log (CoreOptions.Committed). With Recovered too
	// (the configuration still names the stopped process), a replica made
	// the joiner keeps its state rather than failing with ErrStaleState.
	Committed bool
}

// Forwarder sends a request this replica cannot answer to the replica
// that can, and appends its reply to out. A write carries the client's
// request id (client "" for none: the forwarder numbers it).
type Forwarder interface {
	Write(client string, num uint64, args [][]byte, out []byte) ([]byte, error)
	Read(args [][]byte, out []byte) ([]byte, error)
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
	forward Forwarder

	// mu guards the core and serializes Prepare, Apply and Restore; reads
	// of the state machine take it shared.
	mu     sync.RWMutex
	core   protocol.Core
	proto  string // the protocol's name
	env    env
	cfg    coord.Config
	member bool // my incarnation is the configured one for my name

	// headApplied is the last proposal the head applied but has not yet
	// reported to the core (guarded by mu); see flushHeadApplied.
	headApplied uint64
	// early holds messages from epochs not installed yet (guarded by mu).
	early earlyMessages
	// speculative is the core's Status().Speculative as last seen, so the
	// state machine tracks changes exactly while it is set (guarded by mu).
	speculative bool

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
	// hist are the latency histograms /metrics exports.
	hist histograms
	// synced is the applied seq the last successful store sync covered
	// (see syncStore).
	synced atomic.Uint64
	// retiring is set by Retire: the core's effects are no longer carried
	// out, so the replica applies nothing more.
	retiring atomic.Bool
	failedCh chan struct{}
	stats    stats

	// history is the group history the state belongs to, for Retire
	// (guarded by mu).
	history historySeen
	// recoveredSeq is the applied seq of a Recovered store at start; reads
	// wait for the commit point to reach it (see readLocal).
	recoveredSeq uint64
	// recoveryChecked is set once a configuration naming this process
	// made it a member, which a Recovered replica must be (guarded by mu).
	recoveryChecked bool
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
	if opts.Sleep == nil {
		opts.Sleep = sleep
	}
	if opts.Spawn == nil {
		opts.Spawn = func(f func()) { go f() }
	}
	opts.Core.now = opts.Now
	opts.Core.Restarted = opts.Recovered
	opts.Core.Committed = opts.Committed
	core, err := newCore(opts.Protocol, opts.Name, opts.Core, opts.Machine)
	if err != nil {
		return nil, err
	}
	proto := opts.Protocol
	if proto == "" {
		proto = ProtocolChain
	}
	r := &Replica{
		opts:    opts,
		sm:      opts.Machine,
		store:   opts.Store,
		log:     opts.Logger,
		core:    core,
		proto:   proto,
		env:     newEnv(opts.Rand),
		configs: make(chan coord.Config, 16),
		kick:    make(chan struct{}, 1),
		routes:  newRoutes(),

		failedCh: make(chan struct{}),
	}
	if opts.Recovered {
		r.recoveredSeq = opts.Store.AppliedSeq()
	}
	r.hist = newHistograms()
	r.commit.init()
	r.commit.waited, r.commit.timeout, r.commit.now = r.hist.commitWait, opts.WaitTimeout, opts.Now
	return r, nil
}

// Attach wires the replica to its transport, snapshot source and lease.
// They are created after the replica because the transport delivers into it.
func (r *Replica) Attach(send Sender, fetch SnapshotFetcher, lease Lease) {
	r.send, r.fetch, r.lease = send, fetch, lease
	if r.forward = r.opts.Forward; r.forward == nil {
		f := newForwarder(r.opts.Name+"/"+r.opts.Incarnation, r.routes, r.log)
		f.password = r.opts.ForwardPassword
		if r.opts.ForwardBudget > 0 {
			f.budget = r.opts.ForwardBudget
		}
		r.forward = f
	}
}

// Deliver steps an inbound protocol message on the calling goroutine, the
// transport's reader for that peer. Its effects wait for BurstDone, so a
// burst of messages that arrived together is applied, forwarded and acked
// as one batch: one message downstream and one ack upstream instead of
// one per update.
func (r *Replica) Deliver(from string, payload []byte) {
	r.mu.Lock()
	err := r.core.Step(payload)
	if errors.Is(err, protocol.ErrFutureEpoch) {
		r.early.keep(payload)
	}
	r.mu.Unlock()
	if err != nil && !errors.Is(err, protocol.ErrStaleEpoch) {
		// A message of an older epoch is dropped quietly: its sender
		// has moved on, or will learn of the new configuration.
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
func (r *Replica) Protocol() string { return r.proto }

// Epoch is the configuration epoch the replica runs in.
func (r *Replica) Epoch() uint64 { return r.epoch.Load() }

// Run drives the core until ctx ends: it is a loop over the stepping
// calls in drive.go, fed by the coordinator's configurations, a ticker and
// the writers' kicks.
func (r *Replica) Run(ctx context.Context) {
	r.runCtx.Store(&ctx)
	t := time.NewTicker(r.opts.Tick)
	defer t.Stop()
	epochs := r.epochTicker()
	for {
		select {
		case <-ctx.Done():
			r.commit.fail(ErrNotServing)
			return
		case cfg := <-r.configs:
			r.InstallConfig(ctx, cfg)
		case <-r.kick:
			// Let writers that are already runnable propose too, so one
			// batch carries them all: under load this turns one message
			// per write into one per burst of writes, for a few
			// microseconds of latency.
			runtime.Gosched()
			r.Flush(ctx)
		case <-epochs:
			// The core closes its epoch on its own clock; this only makes
			// sure it is asked once per epoch when nothing else happens.
			r.CloseEpoch(ctx)
		case now := <-t.C:
			r.TickAt(ctx, now)
		}
	}
}

// epochTicker returns a channel that ticks once per epoch of a core that
// replicates in epochs (Status().Epochs), or nil.
func (r *Replica) epochTicker() <-chan time.Time {
	r.mu.RLock()
	every := r.core.Status().Epochs.Interval
	r.mu.RUnlock()
	if every <= 0 {
		return nil
	}
	return time.NewTicker(every).C
}

// flushHeadAppliedLocked tells the core about the head's own applied
// proposals, which lets it stream them downstream in one batch.
func (r *Replica) flushHeadAppliedLocked() {
	if r.headApplied > 0 {
		r.core.Applied(r.headApplied)
		r.headApplied = 0
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (r *Replica) kickLoop() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}
