package checkpoint

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/lockstep/lockstep/protocol/internal/group"
)

// Defaults for the zero fields of Options.
const (
	DefaultWindow      = 4
	DefaultMaxChunk    = 1 << 20
	DefaultResendTicks = group.DefaultResendTicks
	DefaultHelloTicks  = group.DefaultHelloTicks
	// DefaultInterval is the epoch length (Remus's epoch is tens of
	// milliseconds).
	DefaultInterval = 20 * time.Millisecond
	// DefaultMaxDirty is the dirty state past which an epoch is cut early.
	DefaultMaxDirty = 4 << 20
)

// lineageDirty is the lineage of a replica that left the primary's role
// without restarting: its store may hold writes of an epoch it never
// checkpointed, so its state is no point of any history and no primary
// accepts it (see accepts).
const lineageDirty = math.MaxUint64

// Options tunes a Core. Zero fields take their defaults.
type Options struct {
	// ID is this replica's name, as configurations list it.
	ID string
	// Window is the most checkpoints the primary may hold that one peer
	// (backup or joiner) has not acknowledged; Checkpoint returns
	// ErrWindowFull beyond it, so a slow backup slows the primary instead
	// of checkpoints piling up (default 4).
	Window int
	// MaxChunk is the most checkpoint bytes one MsgChunk carries
	// (default 1 MiB).
	MaxChunk int
	// ResendTicks is how many ticks without acknowledgement progress from
	// a peer, while checkpoints sent to it are unacknowledged, before the
	// primary sends again from the oldest checkpoint the peer is not
	// known to hold (go-back-N) (default 10).
	ResendTicks int
	// HelloTicks is how many ticks without a message from the primary,
	// while behind it, before a backup or joiner sends Hello again
	// (default 10).
	HelloTicks int

	// Clock, if set, is the time the primary's epochs are measured on (a
	// monotonic reading from any origin): once Interval has passed since
	// the epoch opened, Ready asks the runtime to close it
	// (protocol.Ready.TakeDelta). Without it the caller closes epochs
	// itself, when it likes, with CloseEpoch or Checkpoint (as the
	// simulator does).
	Clock func() time.Duration
	// Interval is the epoch length (default 20 ms).
	Interval time.Duration
	// DirtyBytes, if set, reports how much state the primary's writes
	// changed since the last checkpoint, as the state machine estimates
	// it. Past MaxDirty (default 4 MiB) the epoch is cut early, and while
	// the window is full as well, Propose refuses: a slow backup
	// throttles the primary.
	DirtyBytes func() int
	MaxDirty   int
	// Restarted means the replica runs on state kept from an earlier
	// process (a group re-formed after a total outage, see coord.Plan):
	// in the first configuration that makes it a backup, it counts as a
	// joiner made member, incomplete until it has applied as far as the
	// primary reports, since its state may lag what the group committed.
	Restarted bool
}

func (o Options) withDefaults() Options {
	o.Window = group.OrDefault(o.Window, DefaultWindow)
	o.MaxChunk = group.OrDefault(o.MaxChunk, DefaultMaxChunk)
	o.ResendTicks = group.OrDefault(o.ResendTicks, DefaultResendTicks)
	o.HelloTicks = group.OrDefault(o.HelloTicks, DefaultHelloTicks)
	o.MaxDirty = group.OrDefault(o.MaxDirty, DefaultMaxDirty)
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	return o
}

// Ready is the effects a Core has accumulated since the last call to
// Core.Ready. The caller owns the slices; Message.Data at the primary is
// shared with the checkpoints it holds and must not be modified.
type Ready struct {
	// Messages are to be sent, in this order per destination.
	Messages []Message
	// Install holds complete checkpoints from the primary, in order and
	// continuing those of earlier Readies. The runtime applies each one
	// atomically (one storage batch) and then reports it with
	// Core.Applied. The primary's own checkpoints are never listed, except
	// the empty one that a new primary makes over its own state (see
	// CloseEpoch).
	Install []Checkpoint
	// Commit, at the primary, is a store seq such that every backup of
	// the configuration has installed the primary's state at it or later:
	// the replies of writes and reads up to it may be released. It only
	// grows while the replica stays primary, and starts again from 0 when
	// it takes office. 0 means no change.
	Commit uint64
	// NeedSnapshot names the primary to fetch a snapshot from, after it
	// answered MsgSnapshotNeeded, or "". The runtime asks the primary,
	// whose runtime opens the snapshot and calls Core.Hold under one lock;
	// it then checks Core.AcceptsSnapshot, installs the snapshot, calls
	// Core.Restored, and keeps retrying (or waits for a new configuration)
	// if the transfer fails.
	NeedSnapshot string
}

// Status is a summary of a Core for the coordinator, metrics and tests.
type Status struct {
	ID      string
	Role    Role
	Epoch   uint64
	Primary string // Members[0] of the current configuration
	// Applied is the store seq the replica's state is at as far as the
	// core knows: at a backup or joiner the last checkpoint installed or
	// snapshot restored, at the primary its last checkpoint (or, until
	// its first, what it installed before taking office).
	Applied uint64
	// Last is the seq the state reaches once every checkpoint received is
	// installed; at the primary, its last checkpoint seq.
	Last uint64
	// Commit is the primary's commit point (see Ready.Commit); 0
	// elsewhere.
	Commit uint64
	// Held is how many checkpoints the primary keeps for peers that have
	// not acknowledged them (or for a snapshot in transfer).
	Held    int
	Lineage uint64 // the lineage of this replica's state (see the package comment), 0 if unknown
	// Synced, for a backup or joiner, means the primary accepted its
	// state as a point of its history in this epoch and it is not waiting
	// for a snapshot. A primary is always synced.
	Synced bool
	// CaughtUp means the replica is synced and has installed everything
	// up to the primary's last checkpoint as last reported in this epoch;
	// the coordinator makes a joiner a backup once it is set.
	CaughtUp bool
	// Complete means the replica is a member holding every write a
	// primary may have released a reply for; see the package comment. The
	// coordinator promotes only a complete backup, preferring the highest
	// Applied, and keeps at least one complete member alive.
	Complete bool
	// ReadReady means the replica is a complete primary that has
	// installed everything it received before taking office: its runtime
	// may execute writes and answer reads from its store, releasing each
	// reply once Commit reaches the store seq it was executed or read at.
	// (A partitioned old primary that still believes it leads must be
	// stopped by the runtime's lease, which the core cannot see.)
	ReadReady bool
	// Peers, at the primary, describes every backup and the joiner.
	Peers []PeerStatus
}

// PeerStatus is the primary's view of one backup or joiner.
type PeerStatus struct {
	ID      string
	Joining bool   // the configuration's joiner: does not count for Commit
	Synced  bool   // its Hello of this epoch was accepted
	Acked   uint64 // the highest seq it acknowledged in this epoch
	// Lag is how many held checkpoints it has not acknowledged: what the
	// window counts. Checkpoint refuses once any counted peer's Lag
	// reaches Window; a peer fetching a snapshot is not counted.
	Lag int
}

// Core is the checkpoint replication protocol for one replica of one
// group. It is not safe for concurrent use: the runtime serializes every
// call, like etcd-io/raft's RawNode.
type Core struct {
	opts Options
	view group.View // the epoch, this replica's role and the primary

	applied uint64 // see Status.Applied
	last    uint64 // see Status.Last

	// lineage names the history this replica's state is a point of: the
	// epoch in which its primary took office (0: unknown). A primary also
	// remembers the lineage it came from and its state then (fork): a
	// state of that parent lineage at exactly fork is a point of its own.
	lineage uint64
	parent  uint64
	fork    uint64

	// The primary's checkpoints: held are those after base, oldest first,
	// each continuing the one before it (the first continues base).
	held       []held
	base       uint64
	commit     uint64     // its commit point since taking office
	commitSent uint64     // the last Commit handed out in a Ready
	peers      []peer     // backups, then the joiner; empty elsewhere
	hold       group.Hold // checkpoints a snapshot in transfer needs

	up upLink // backup or joiner: the link to the primary

	// barrier is how far a joiner made backup must install; see
	// Status.Complete.
	barrier group.Barrier

	ep epochs // the primary's open epoch

	ready Ready
}

// held is a checkpoint the primary keeps, with the seq it continues.
type held struct {
	Checkpoint
	prev uint64
}

// peer is the primary's state of the link to one backup or joiner: the
// shared part (whose Floor counts checkpoints received as acked), and
// where its stream of checkpoints stands.
type peer struct {
	group.Peer
	snap bool   // its last Hello was refused: it fetches a snapshot, and Hold protects what it needs
	sent uint64 // every checkpoint up to sent went out (or the peer had it at its Hello)
}

// upLink is a backup's or joiner's state of the link to the primary,
// reset with every configuration: the shared part (Heard: an Accept or a
// chunk arrived; PrimaryLast: the primary's last checkpoint seq), and the
// checkpoint being received.
type upLink struct {
	group.Up
	reack bool // the primary resent or asked: ack again even without progress
	part  partial
}

// partial is a checkpoint being received, chunk by chunk.
type partial struct {
	open bool
	seq  uint64
	data []byte
}

// New returns a Core for the replica opts.ID whose state is at store seq
// applied. It has no role until SetConfig. Its lineage is unknown, so a
// non-empty state is not trusted as a point of anyone's history: it will
// be replaced by a snapshot.
func New(opts Options, applied uint64) *Core {
	c := &Core{opts: opts.withDefaults(), view: group.NewView(opts.ID, errs), applied: applied, last: applied, base: applied}
	if c.opts.Clock != nil {
		c.ep.next = c.opts.Clock() + c.opts.Interval
	}
	return c
}

// restartedBackup reports, once, whether a Restarted replica has just
// become a member that follows a primary; see Options.Restarted.
func (c *Core) restartedBackup() bool {
	if !c.opts.Restarted || !c.view.Member() {
		return false
	}
	c.opts.Restarted = false
	return c.view.Follows()
}

// SetConfig installs cfg if its epoch is newer than the current one and it
// is valid; older, repeated and invalid configurations are ignored. Every
// new epoch restarts every link: backups and the joiner send Hello to the
// primary, which sends nothing to a peer before its Hello of this epoch,
// and a partly received checkpoint is dropped.
//
// A replica removed from a configuration must not rejoin with its state,
// since it may hold writes that were never committed; the runtime starts
// it again empty with a new Core and the coordinator adds it as a joiner.
func (c *Core) SetConfig(cfg Config) {
	if cfg.Epoch <= c.view.Epoch || cfg.Validate() != nil {
		return
	}
	prev := c.view.Role
	c.view.Set(cfg.Epoch, cfg.Members, cfg.Joining)
	c.up = upLink{}
	c.peers = nil
	switch {
	case c.view.Role == RolePrimary:
		c.peers = group.NewPeers[peer](cfg.Members, cfg.Joining)
		if prev != RolePrimary {
			c.takeOffice()
		}
	case prev == RolePrimary:
		c.leaveOffice()
	}
	if c.view.Role != prev {
		c.ep.reset(c.view.Role == RolePrimary, c.applied)
	}
	c.barrier.Reconfigure(c.view.Member(), prev == RoleJoining || c.restartedBackup())
	if c.view.Follows() {
		c.sendHello()
	}
	c.settle()
}

// takeOffice starts a new lineage when this replica becomes primary: its
// own checkpoints from now on continue its state as it will be once it
// has installed what it received, and the commit point counts again from
// this configuration's acknowledgements.
func (c *Core) takeOffice() {
	c.parent, c.fork = c.lineage, c.last
	c.lineage = c.view.Epoch
	c.held, c.base = nil, c.last
	c.commit, c.commitSent = 0, 0
	c.hold.Release()
}

// leaveOffice marks the state of a primary that is demoted without
// restarting as no point of any history (its store may hold writes no
// checkpoint carries), so that it can only continue from a snapshot.
func (c *Core) leaveOffice() {
	c.lineage = lineageDirty
	c.held, c.base = nil, c.last
	c.commit, c.commitSent = 0, 0
	c.hold.Release()
}

// Checkpoint hands the primary the checkpoint of an epoch the runtime has
// closed: data holds the final state of every key its writes dirtied, seq
// the store seq they end at. The primary sends it to every accepted peer.
// It refuses with ErrNotPrimary unless the replica is ReadReady, and with
// ErrWindowFull while some counted peer lags Window checkpoints behind:
// the runtime then keeps the dirty state and retries later, with the
// data of the longer epoch (CanCheckpoint tells beforehand). data is kept
// until every peer has it and must not be modified.
func (c *Core) Checkpoint(seq uint64, data []byte) error {
	if err := c.refusal(); err != nil {
		return err
	}
	if seq <= c.last {
		return fmt.Errorf("%w: %d after %d", ErrCheckpointOrder, seq, c.last)
	}
	c.held = append(c.held, held{Checkpoint: Checkpoint{Seq: seq, Data: data}, prev: c.last})
	c.last, c.applied = seq, seq
	c.settle()
	return nil
}

// CanCheckpoint reports whether Checkpoint would now accept a checkpoint
// with a seq above Status().Last: the replica is ReadReady and no peer it
// counts lags Window checkpoints. A runtime that forgets the dirty state
// it hands out checks it before taking that state.
func (c *Core) CanCheckpoint() bool { return c.refusal() == nil }

// refusal is why Checkpoint would refuse now, or nil.
func (c *Core) refusal() error {
	if !c.ReadReady() {
		return fmt.Errorf("%w: %s is %s in epoch %d (complete %t, installed %d of %d received before taking office)",
			ErrNotPrimary, c.opts.ID, c.view.Role, c.view.Epoch, c.complete(), c.applied, c.fork)
	}
	for i := range c.peers {
		if p := &c.peers[i]; !p.snap && c.lag(p) >= c.opts.Window {
			return fmt.Errorf("%w: %s lags %d checkpoints", ErrWindowFull, p.ID, c.lag(p))
		}
	}
	return nil
}

// lag is how many held checkpoints p has not acknowledged.
func (c *Core) lag(p *peer) int {
	return len(c.held) - c.heldUpTo(p.Ack)
}

// heldUpTo is how many held checkpoints have a seq <= seq.
func (c *Core) heldUpTo(seq uint64) int {
	i, _ := slices.BinarySearchFunc(c.held, seq+1, func(h held, s uint64) int {
		switch {
		case h.Seq < s:
			return -1
		case h.Seq > s:
			return 1
		}
		return 0
	})
	return i
}

// Applied reports that the runtime has applied everything up to seq: at
// a backup or joiner every checkpoint of Ready.Install up to seq (and made
// it durable as its policy requires), at the primary its own writes
// (numbered by Propose) as well. Values beyond the last checkpoint
// received are clamped to it; older values are ignored.
func (c *Core) Applied(seq uint64) {
	if c.view.Role == RolePrimary {
		c.ep.exec = max(c.ep.exec, seq)
	}
	c.installed(seq)
}

// installed records that the state is at checkpoint seq or later.
func (c *Core) installed(seq uint64) {
	seq = min(seq, c.last)
	if seq <= c.applied {
		return
	}
	c.applied = seq
	c.settle()
}

// AcceptsSnapshot reports whether Restored(from, seq) would be accepted:
// the replica is a backup or joiner waiting for the snapshot that the
// primary of its current configuration, from, told it to fetch, whatever
// its seq (it may take the replica back; see Restored). A
// snapshot fetched after Ready.NeedSnapshot may arrive after a
// reconfiguration; the runtime checks this before installing it.
func (c *Core) AcceptsSnapshot(from string, _ uint64) bool {
	return c.view.Follows() && c.up.AwaitSnap && from == c.view.Primary
}

// Restored reports that the runtime replaced its state with a snapshot
// that from took at store seq seq, after Ready.NeedSnapshot. A partly
// received checkpoint is dropped, and so must be any checkpoint of an
// earlier Ready.Install the runtime has not applied yet. seq may be below
// the applied seq: a backup that installed a checkpoint of an old primary
// which the new one never had goes back to the new primary's history. The
// replica then says Hello from seq. It is ignored unless
// AcceptsSnapshot(from, seq).
func (c *Core) Restored(from string, seq uint64) {
	if !c.AcceptsSnapshot(from, seq) {
		return
	}
	if c.complete() {
		// A snapshot of the current primary holds every write committed
		// before it was taken, and nothing can commit without this
		// replica's ack while it waits for it: still complete.
		c.barrier.Seq = min(c.barrier.Seq, seq)
	}
	c.applied, c.last = seq, seq
	c.ready.Install = nil
	c.lineage = c.up.SnapLineage
	c.up.AwaitSnap, c.up.GapHello, c.up.part, c.up.AckSent = false, false, partial{}, 0
	c.sendHello()
	c.settle()
}

// Hold reports that the runtime of the primary is serving a snapshot of
// its state at store seq seq, which may lie inside the open epoch: every
// checkpoint above seq is kept until every peer has acknowledged seq, so
// the replica that installs the snapshot can continue from there. A
// configuration in which this replica is not primary releases the hold.
// The runtime serves snapshots only while the core is ReadReady: before,
// the primary's store may lag its base, and the snapshot would be refused.
func (c *Core) Hold(seq uint64) {
	if c.view.Role != RolePrimary {
		return
	}
	c.hold.Keep(seq)
	c.settle()
}

// Tick advances logical time for the resend and Hello timers.
func (c *Core) Tick() {
	switch c.view.Role {
	case RolePrimary:
		c.tickPeers()
	case RoleBackup, RoleJoining:
		c.tickUp()
	default:
		return
	}
	c.settle()
}

// tickPeers acts for every peer whose sent checkpoints have gone without
// ack progress for ResendTicks. If the peer is not known to have received
// them all, it sends again from the oldest one it is not known to hold
// (go-back-N); otherwise (it received them but its acks of installing
// them may be lost, or it installs slowly) it only asks for the ack again
// with an Accept, rather than resending checkpoints the peer holds.
func (c *Core) tickPeers() {
	for i := range c.peers {
		p := &c.peers[i]
		if !p.Idle.Tick(p.Ready && p.Ack < min(p.sent, c.last), c.opts.ResendTicks) {
			continue
		}
		if p.Floor < min(p.sent, c.last) {
			p.sent = p.Floor
			continue
		}
		c.send(Message{Type: MsgAccept, To: p.ID, Seq: p.Floor, Head: c.last, Lineage: c.lineage})
	}
}

// tickUp sends Hello again when the primary has been silent for
// HelloTicks while this replica is behind it (or has not heard from it at
// all in this epoch).
func (c *Core) tickUp() {
	if c.up.TickHello(c.last, c.opts.HelloTicks) {
		c.sendHello()
	}
}

// HasReady reports whether Ready would return any effect, an epoch to
// close included.
func (c *Core) HasReady() bool {
	r := &c.ready
	return len(r.Messages) > 0 || len(r.Install) > 0 || r.Commit != 0 || r.NeedSnapshot != "" || c.epochDue(false)
}

// TypedReady takes the effects accumulated since the last call, with the
// messages as values (Ready is the contract's form, which also asks for
// epochs to be closed).
func (c *Core) TypedReady() Ready {
	r := c.ready
	c.ready = Ready{}
	return r
}

// Detail summarizes the replica in checkpoint replication's own terms
// (Status is the contract's summary).
func (c *Core) Detail() Status {
	s := Status{
		ID:      c.opts.ID,
		Role:    c.view.Role,
		Epoch:   c.view.Epoch,
		Primary: c.view.Primary,
		Applied: c.applied,
		Last:    c.last,
		Held:    len(c.held),
		Lineage: c.lineage,
	}
	if s.Lineage == lineageDirty {
		s.Lineage = 0
	}
	switch c.view.Role {
	case RolePrimary:
		s.Commit, s.Synced, s.CaughtUp = c.commit, true, true
		for i := range c.peers {
			p := &c.peers[i]
			s.Peers = append(s.Peers, PeerStatus{ID: p.ID, Joining: p.Joining, Synced: p.Ready, Acked: p.Ack, Lag: c.lag(p)})
		}
	case RoleBackup, RoleJoining:
		s.Synced = c.up.Synced()
		s.CaughtUp = s.Synced && c.applied >= c.up.PrimaryLast
	}
	s.Complete = c.complete()
	s.ReadReady = c.ReadReady()
	return s
}

// ReadReady is Detail().ReadReady without building the rest of Status,
// for the runtime's write and read paths.
func (c *Core) ReadReady() bool {
	return c.view.Role == RolePrimary && c.complete() && c.applied >= c.fork
}

// complete reports whether this replica is a member holding every write a
// primary may have committed; see Status.Complete.
func (c *Core) complete() bool {
	return c.view.Member() && c.barrier.Passed(c.applied)
}
