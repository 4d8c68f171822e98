package pb

import (
	"fmt"

	"github.com/lockstep/lockstep/protocol/internal/group"
	"github.com/lockstep/lockstep/protocol/internal/wire"
)

// Defaults for the zero fields of Options.
const (
	DefaultWindow      = 1024
	DefaultMaxBatch    = 256
	DefaultResendTicks = group.DefaultResendTicks
	DefaultHelloTicks  = group.DefaultHelloTicks
)

// Options tunes a Core. Zero fields take their defaults.
type Options struct {
	// ID is this replica's name, as configurations list it.
	ID string
	// Window is the most entries the primary may hold that one peer
	// (backup or joiner) has not acknowledged; Propose returns
	// ErrWindowFull beyond it, so a slow backup slows the primary instead
	// of the log growing without bound (default 1024).
	Window int
	// MaxBatch is the most entries one MsgEntries carries (default 256).
	MaxBatch int
	// ResendTicks is how many ticks without acknowledgement progress from
	// a peer, while entries sent to it are unacknowledged, before the
	// primary sends again from the oldest entry the peer is not known to
	// hold (go-back-N) (default 10).
	ResendTicks int
	// HelloTicks is how many ticks without a message from the primary,
	// while behind it, before a backup or joiner sends Hello again
	// (default 10).
	HelloTicks int
	// RetainBytes is how much history, in bytes of entry data, the
	// replica keeps beyond what its peers still need, like Redis's
	// replication backlog (default 0: none): a replica that rejoins on
	// a state it kept (see Committed) is streamed the entries after it
	// instead of a snapshot while they are retained. It also lets the
	// joiner lag as many entries as fit in it (at the log's mean entry
	// size) before it counts against Window.
	RetainBytes int
	// Committed means the state at the applied seq given to New is all
	// committed (it was kept from a clean stop): it is a prefix of every
	// later primary's history, whatever its lineage, so the replica's
	// Hello names it as such and the primary streams from it rather than
	// sending a snapshot.
	Committed bool
	// Restarted means the replica runs on state kept from an earlier
	// process (a group re-formed after a total outage, see coord.Plan):
	// in the first configuration that makes it a member with someone
	// upstream, it counts as a joiner made member, incomplete until it
	// has applied as far as upstream reports, since its state may lag
	// what the group committed.
	Restarted bool
}

func (o Options) withDefaults() Options {
	o.Window = group.OrDefault(o.Window, DefaultWindow)
	o.MaxBatch = group.OrDefault(o.MaxBatch, DefaultMaxBatch)
	o.ResendTicks = group.OrDefault(o.ResendTicks, DefaultResendTicks)
	o.HelloTicks = group.OrDefault(o.HelloTicks, DefaultHelloTicks)
	return o
}

// Ready is the effects a Core has accumulated since the last call to
// Core.Ready. The caller owns the slices; Entry.Data is shared with the
// core's log and must not be modified.
type Ready struct {
	// Messages are to be sent, in this order per destination.
	Messages []Message
	// Apply holds entries received from the primary, consecutive and
	// continuing those of earlier Readies, for the runtime to apply in
	// order and then report with Core.Applied. The primary's own
	// proposals are never listed: the runtime applies those itself.
	Apply []Entry
	// Commit, at the primary, is a seq such that every entry up to it is
	// applied here and by every backup of the configuration, so the
	// replies of writes (and reads, see Status.ReadReady) up to it may be
	// released. It only grows while the replica stays primary, and starts
	// again from 0 when it takes office. 0 means no change.
	Commit uint64
	// NeedSnapshot names the primary to fetch a snapshot from, after it
	// answered MsgSnapshotNeeded, or "". The runtime asks the primary,
	// which calls Core.Hold when it opens the snapshot, checks
	// Core.AcceptsSnapshot, installs the snapshot, calls Core.Restored,
	// and keeps retrying (or waits for a new configuration) if the
	// transfer fails.
	NeedSnapshot string
}

// Status is a summary of a Core for the coordinator, metrics and tests.
type Status struct {
	ID      string
	Role    Role
	Epoch   uint64
	Primary string // Members[0] of the current configuration
	Applied uint64 // the runtime's applied seq as last reported
	Last    uint64 // the newest seq received or proposed
	// Commit is, at the primary, its commit point (see Ready.Commit); at
	// a backup or joiner, the primary's commit point as last heard.
	Commit  uint64
	Pending int    // entries held for peers: Last-Pending is the newest seq no peer needs
	Lineage uint64 // the lineage of this replica's log (see the package comment), 0 if unknown
	// Synced, for a backup or joiner, means the primary accepted its log
	// as a prefix of its own in this epoch and it is not waiting for a
	// snapshot: its history is the primary's, up to its last seq. A
	// primary is always synced.
	Synced bool
	// CaughtUp means the replica is synced and has applied everything up
	// to the primary's last seq as last reported in this epoch; the
	// coordinator makes a joiner a backup once it is set.
	CaughtUp bool
	// Complete means the replica is a member that holds every entry a
	// primary may have released a reply for; see the package comment. The
	// coordinator promotes only a complete backup, preferring the highest
	// Applied (then Last), and keeps at least one complete member alive.
	Complete bool
	// ReadReady means the replica is a complete primary: it may answer a
	// read from its state at its applied seq A, releasing the reply once
	// Commit reaches A, exactly as a write's reply at seq A would be. The
	// read then never exposes an entry that a failover could lose. (A
	// partitioned old primary that still believes it leads must be
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
	Acked   uint64 // the highest seq it acknowledged as applied in this epoch
	// Lag is how many entries the window counts against this peer: those
	// above both its ack and the oldest entry the primary still holds.
	// Propose refuses once any peer's Lag reaches Window.
	Lag uint64
}

// Core is the primary-backup protocol for one replica of one group. It is
// not safe for concurrent use: the runtime serializes every call, like
// etcd-io/raft's RawNode.
type Core struct {
	opts Options
	view group.View // the epoch, this replica's role and the primary

	applied    uint64
	log        wire.Log // entries (log.Base, log.Last()]
	commit     uint64   // primary: its commit point since taking office
	commitSent uint64   // the last Commit handed out in a Ready
	known      uint64   // backup: the highest commit point heard from a primary
	// released is the newest seq no peer needs from the log any more (the
	// highest trimPoint so far): the log holds what follows it for peers,
	// and up to RetainBytes of what precedes it.
	released uint64

	// lineage names the history this replica's log is a prefix of: the
	// epoch in which its primary took office (0: unknown). A primary also
	// remembers the lineage it came from and its last seq then: a log of
	// that parent lineage ending no later than fork is a prefix of its own.
	lineage uint64
	parent  uint64
	fork    uint64

	peers []peer     // primary: backups, then the joiner; empty elsewhere
	up    group.Up   // backup or joiner: the link to the primary, Heard once a MsgEntries arrives
	hold  group.Hold // primary: the entries a snapshot in transfer needs

	// barrier is how far a joiner made backup must apply; see
	// Status.Complete.
	barrier group.Barrier

	ready Ready
}

// peer is the primary's state of the link to one backup or joiner: the
// shared part, and where its stream of entries stands.
type peer struct {
	group.Peer
	next  uint64 // the next seq to send
	greet bool   // answer the Hello with an (empty, if need be) MsgEntries
}

// New returns a Core for the replica opts.ID whose state machine has
// applied entries 1..applied. It has no role until SetConfig. Its lineage
// is unknown, so a non-empty state is not trusted as a prefix of anyone's
// history, and will be replaced by a snapshot, unless opts.Committed says
// it is all committed.
func New(opts Options, applied uint64) *Core {
	c := &Core{opts: opts.withDefaults(), view: group.NewView(opts.ID, errs), applied: applied, released: applied}
	c.log.Reset(applied)
	if opts.Committed {
		c.known = applied
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
// primary, which sends nothing to a peer before its Hello of this epoch.
//
// A replica removed from a configuration must not rejoin with its state,
// since its history may hold entries that were never committed; the
// runtime starts it again empty with a new Core and the coordinator adds
// it as a joiner.
func (c *Core) SetConfig(cfg Config) {
	if cfg.Epoch <= c.view.Epoch || cfg.Validate() != nil {
		return
	}
	prev := c.view.Role
	c.view.Set(cfg.Epoch, cfg.Members, cfg.Joining)
	c.up = group.Up{}
	c.peers = nil
	if c.view.Role == RolePrimary {
		c.peers = group.NewPeers[peer](cfg.Members, cfg.Joining)
		if prev != RolePrimary {
			c.takeOffice()
		}
	} else {
		c.hold.Release()
	}
	c.barrier.Reconfigure(c.view.Member(), prev == RoleJoining || c.restartedBackup())
	if c.view.Follows() {
		c.sendHello()
	}
	c.settle()
}

// takeOffice starts a new lineage when this replica becomes primary: its
// own entries from now on follow its log as it stands, and the commit
// point counts again from this configuration's acknowledgements.
func (c *Core) takeOffice() {
	c.parent, c.fork = c.lineage, c.log.Last()
	c.lineage = c.view.Epoch
	c.commit, c.commitSent = 0, 0
}

// Propose appends data as the next entry at the primary and returns its
// seq. The runtime applies it locally and then calls Applied; the entry
// goes to the peers only after that. A primary refuses while it is not
// complete or still has entries received before it took office to apply,
// and with ErrWindowFull while some peer lags Window entries behind.
func (c *Core) Propose(data []byte) (uint64, error) {
	if c.view.Role != RolePrimary {
		return 0, fmt.Errorf("%w: %s is %s in epoch %d", ErrNotPrimary, c.opts.ID, c.view.Role, c.view.Epoch)
	}
	if !c.complete() {
		return 0, fmt.Errorf("%w: %s may lack committed entries (applied %d, barrier %d, known %t)",
			ErrNotPrimary, c.opts.ID, c.applied, c.barrier.Seq, !c.barrier.Pending)
	}
	if c.applied < c.fork {
		// Its own proposals may run ahead of Applied (the runtime reports
		// them in batches), but not the entries of the old primary.
		return 0, fmt.Errorf("%w: %s has applied %d of the %d entries it received before taking office",
			ErrNotPrimary, c.opts.ID, c.applied, c.fork)
	}
	last := c.log.Last()
	for i := range c.peers {
		if p := &c.peers[i]; c.lag(p) >= c.window(p) {
			return 0, ErrWindowFull
		}
	}
	c.log.Append(Entry{Seq: last + 1, Data: data})
	return last + 1, nil
}

// lag is how many entries the window counts against p.
func (c *Core) lag(p *peer) uint64 {
	return c.log.Last() - max(p.Ack, c.released)
}

// window is how far p may lag before Propose refuses: Window, or for the
// joiner as many entries as fit in RetainBytes at the log's mean entry
// size if that is more, since a backlog that fits is one the primary
// retains anyway (a joiner catching up from a kept state, or installing
// a snapshot, does not stall writes while it fits).
func (c *Core) window(p *peer) uint64 {
	w := uint64(c.opts.Window)
	if !p.Joining || c.opts.RetainBytes <= 0 || c.log.Len() == 0 {
		return w
	}
	mean := max(uint64(c.log.Bytes())/uint64(c.log.Len()), 1)
	return max(w, uint64(c.opts.RetainBytes)/mean)
}

// Applied reports that the runtime has applied (and made durable as its
// policy requires) every entry up to seq. Values beyond the last entry are
// clamped to it; older values are ignored.
func (c *Core) Applied(seq uint64) {
	seq = min(seq, c.log.Last())
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
// that from took at seq, after Ready.NeedSnapshot. The log is dropped, and
// so must be any entry of an earlier Ready.Apply the runtime has not
// applied yet. seq may be below the applied seq: a backup that applied
// entries of an old primary which the new one never had goes back to the
// new primary's history (a runtime whose storage cannot go back must
// start the replica again empty instead). The replica then says Hello
// from seq. It is ignored unless AcceptsSnapshot(from, seq).
func (c *Core) Restored(from string, seq uint64) {
	if !c.AcceptsSnapshot(from, seq) {
		return
	}
	if c.complete() {
		// A snapshot of the current primary holds every entry committed
		// before it was taken, and nothing can commit without this
		// replica's ack while it waits for it: still complete.
		c.barrier.Seq = min(c.barrier.Seq, seq)
	}
	c.log.Reset(seq)
	c.applied, c.released = seq, seq
	c.ready.Apply = nil
	c.lineage = c.up.SnapLineage
	c.up.AwaitSnap, c.up.GapHello = false, false
	c.sendHello()
	c.settle()
}

// Hold reports that the runtime of the primary is serving a snapshot
// taken at seq: entries above seq are kept until every peer has
// acknowledged seq, so the replica that installs it can continue from its
// log. A configuration in which this replica is not primary releases the
// hold.
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

// tickPeers acts for every peer whose sent entries have gone without ack
// progress for ResendTicks: it sends again from the oldest entry the peer
// is not known to hold (go-back-N), or, if it is known to hold them all,
// an empty MsgEntries, which makes it repeat its ack (the ack, not the
// entries, may be what was lost).
func (c *Core) tickPeers() {
	for i := range c.peers {
		p := &c.peers[i]
		if p.Idle.Tick(p.Ready && p.Ack+1 < p.next, c.opts.ResendTicks) {
			p.next, p.greet = p.Floor+1, true
		}
	}
}

// tickUp sends Hello again when the primary has been silent for
// HelloTicks while this replica is behind it (or has not heard from it at
// all in this epoch).
func (c *Core) tickUp() {
	if c.up.TickHello(c.log.Last(), c.opts.HelloTicks) {
		c.sendHello()
	}
}

// HasReady reports whether Ready would return any effect.
func (c *Core) HasReady() bool {
	r := &c.ready
	return len(r.Messages) > 0 || len(r.Apply) > 0 || r.Commit != 0 || r.NeedSnapshot != ""
}

// TypedReady takes the effects accumulated since the last call, with the
// messages as values (Ready is the contract's form).
func (c *Core) TypedReady() Ready {
	r := c.ready
	c.ready = Ready{}
	return r
}

// Detail summarizes the replica in primary-backup's own terms (Status is
// the contract's summary).
func (c *Core) Detail() Status {
	s := Status{
		ID:      c.opts.ID,
		Role:    c.view.Role,
		Epoch:   c.view.Epoch,
		Primary: c.view.Primary,
		Applied: c.applied,
		Last:    c.log.Last(),
		Commit:  c.known,
		Pending: int(c.log.Last() - c.released),
		Lineage: c.lineage,
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
// for the runtime's read path.
func (c *Core) ReadReady() bool { return c.view.Role == RolePrimary && c.complete() }

// complete reports whether this replica is a member holding every entry a
// primary may have committed; see Status.Complete.
func (c *Core) complete() bool {
	return c.view.Member() && c.barrier.Passed(c.applied)
}
