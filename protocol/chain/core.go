package chain

import (
	"fmt"
	"slices"

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
	// Window is the most unacknowledged entries the head may hold;
	// Propose returns ErrWindowFull beyond it (default 1024). A middle
	// learns of acks after the head does, so its log may hold up to
	// twice Window for a while after a reconfiguration.
	Window int
	// JoinWindow is how many applied entries the tail may buffer for a
	// joiner that has not acknowledged them before it holds back its own
	// acks, so that writes wait instead of the buffer growing without
	// bound (default Window). A joiner that has not acknowledged anything
	// yet counts from the oldest entry the tail still holds.
	JoinWindow int
	// MaxBatch is the most entries one MsgEntries carries (default 256).
	MaxBatch int
	// ResendTicks is how many ticks without acknowledgement progress,
	// while entries are outstanding, before the predecessor sends again
	// from the oldest unacknowledged entry (go-back-N) (default 10).
	ResendTicks int
	// HelloTicks is how many ticks without a message from the
	// predecessor, while behind it, before the successor sends Hello
	// again (default 10).
	HelloTicks int
	// RetainBytes is how much history, in bytes of entry data, the
	// replica keeps beyond what its successor still needs, like Redis's
	// replication backlog (default 0: none). A replica that stopped with
	// a state that was all committed (see Status.Commit) may rejoin on
	// it as a joiner; if the tail still holds the entries after its
	// applied seq, it streams them instead of sending a snapshot. It also
	// widens the JoinWindow gate: a tail acks as many entries beyond its
	// joiner as fit in RetainBytes (at the log's mean entry size), so a
	// joiner's catch-up does not stall writes while its backlog fits.
	RetainBytes int
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
	o.JoinWindow = group.OrDefault(o.JoinWindow, o.Window)
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
	// Apply holds entries received from the predecessor, consecutive and
	// continuing those of earlier Readies, for the runtime to apply in
	// order and then report with Core.Applied. The head's own proposals
	// are never listed: the runtime applies those itself.
	Apply []Entry
	// Commit, at the head or single member, is a seq such that every
	// entry up to it is applied by every complete member of the chain
	// (see Status.Complete), so the replies of writes up to it may be
	// released. 0 means no change.
	Commit uint64
	// NeedSnapshot names the predecessor to fetch a snapshot from, after
	// it answered MsgSnapshotNeeded, or "". The runtime installs the
	// snapshot, calls Core.Restored, and keeps retrying (or waits for a new
	// configuration) if the transfer fails.
	NeedSnapshot string
}

// Status is a summary of a Core for the coordinator, metrics and tests.
type Status struct {
	ID          string
	Role        Role
	Epoch       uint64
	Applied     uint64 // the runtime's applied seq as last reported
	Last        uint64 // the newest seq received or proposed
	Commit      uint64 // every seq <= Commit is applied here and by every complete member (at a joiner, everything it applied)
	Pending     int    // entries held for peers: Last-Pending is the newest seq no peer needs
	Retained    int    // entries held in all, Pending and the history kept within RetainBytes
	Oldest      uint64 // the oldest seq a successor may resume from: a Hello with an older seq needs a snapshot
	Predecessor string
	Successor   string
	// CaughtUp, for a replica with a predecessor, means it has applied
	// everything up to the predecessor's last seq as last reported in this
	// epoch; the coordinator promotes a joiner once it is set. A replica
	// without a predecessor is always caught up.
	CaughtUp bool
	// Complete means the replica is a member that has applied every entry
	// a head may have committed. A joiner promoted to member is not
	// complete at first: the old tail may have committed up to JoinWindow
	// entries the joiner had not applied, and the replicas that still
	// hold them may be slow to learn of the promotion. It becomes complete
	// once its predecessor has spoken in the new configuration (which
	// proves the predecessor left the old one) and it has applied up to
	// the seq the predecessor then reported. An incomplete replica does
	// not lead: Propose refuses, and it streams nothing to its successor
	// until its barrier is known. A coordinator keeps at least one
	// complete member alive in the chain.
	Complete bool
	// ReadReady means the replica is a complete tail (or single member),
	// so the runtime may answer reads from its state.
	ReadReady bool
}

// Core is the chain replication protocol for one replica of one group. It
// is not safe for concurrent use: the runtime serializes every call, like
// etcd-io/raft's RawNode.
type Core struct {
	opts Options

	cfg        Config
	role       Role
	pred, succ string
	succIsEnd  bool // the successor is the end of the chain: its Hello and acks report its own applied seq

	applied uint64
	log     wire.Log // entries (log.Base, log.Last()]
	// released is the newest seq no peer needs from this replica's log
	// any more (the highest trimPoint so far): the log holds what follows
	// it for peers, and up to RetainBytes of what precedes it.
	released   uint64
	commit     uint64 // monotonic; see Status.Commit
	commitSent uint64 // the last Commit handed out in a Ready

	down downLink // this replica as predecessor of succ
	up   upLink   // this replica as successor of pred

	holding bool   // Hold was called and its joiner has not acknowledged hold yet
	hold    uint64 // entries above hold are kept while holding

	// barrier is how far a promoted joiner must apply, as its predecessor
	// first reports in the new configuration; see Status.Complete.
	barrier group.Barrier

	ready Ready
}

// downLink is the state of the link to the successor. It is reset with
// every configuration: nothing is sent before the successor's Hello of the
// current epoch.
type downLink struct {
	ready bool        // a Hello of this epoch arrived and was served from the log
	next  uint64      // the next seq to send
	ack   uint64      // the highest ack from the successor in this epoch
	floor uint64      // the successor is known to hold every seq <= floor (Hello or ack)
	idle  group.Timer // ticks without ack progress while sent entries are unacknowledged
	greet bool        // answer the Hello with an (empty, if need be) MsgEntries
	asked bool        // MsgSnapshotNeeded went out and no Hello came since
	// askAgain counts ticks while asked, to repeat MsgSnapshotNeeded.
	askAgain group.Timer
}

// upLink is the state of the link to the predecessor, reset with every
// configuration.
type upLink struct {
	heard     bool        // a MsgEntries from the predecessor arrived in this epoch
	predLast  uint64      // the predecessor's last seq as it last reported
	quiet     group.Timer // ticks since the last message from the predecessor
	awaitSnap bool        // the predecessor answered MsgSnapshotNeeded; waiting for Restored
	snapFrom  uint64      // its Seq: applying up to it ends the wait as well
	gapHello  bool        // a Hello went out for a gap and no entry was accepted since
	ackSent   uint64      // the highest ack sent to the predecessor in this epoch
	headAck   uint64      // the highest ack sent straight to the head in this epoch (see ackUpstream)
}

// New returns a Core for the replica opts.ID whose state machine has
// applied entries 1..applied. It has no role until SetConfig.
func New(opts Options, applied uint64) *Core {
	c := &Core{opts: opts.withDefaults(), applied: applied, released: applied}
	c.log.Reset(applied)
	return c
}

// restartedBehind reports, once, whether a Restarted replica has just
// become a member with a predecessor; see Options.Restarted.
func (c *Core) restartedBehind(member bool) bool {
	if !c.opts.Restarted || !member {
		return false
	}
	c.opts.Restarted = false
	return c.pred != ""
}

// SetConfig installs cfg if its epoch is newer than the current one and it
// is valid; older, repeated and invalid configurations are ignored. Every
// new epoch restarts both links: the successor side sends Hello to its
// (possibly new) predecessor, and the predecessor side sends nothing until
// its successor's Hello of this epoch arrives.
//
// A replica removed from a configuration must not rejoin with its state,
// since its history may hold entries that were never committed; the
// runtime starts it again empty with a new Core.
func (c *Core) SetConfig(cfg Config) {
	if cfg.Epoch <= c.cfg.Epoch || cfg.Validate() != nil {
		return
	}
	prev := c.role
	c.cfg = Config{Epoch: cfg.Epoch, Members: slices.Clone(cfg.Members), Joining: cfg.Joining}
	c.place()
	c.down = downLink{}
	c.up = upLink{}
	if c.succ == "" {
		c.holding = false
	}
	member := c.role != RoleNone && c.role != RoleJoining
	c.barrier.Reconfigure(member, prev == RoleJoining || c.restartedBehind(member))
	if c.pred != "" {
		c.sendHello()
	}
	c.settle()
}

// place derives role, predecessor and successor from the configuration.
func (c *Core) place() {
	c.role, c.pred, c.succ, c.succIsEnd = RoleNone, "", "", false
	m := c.cfg.Members
	i := slices.Index(m, c.opts.ID)
	switch {
	case i < 0 && c.cfg.Joining == c.opts.ID:
		c.role, c.pred = RoleJoining, m[len(m)-1]
		return
	case i < 0:
		return
	case len(m) == 1:
		c.role = RoleSingle
	case i == 0:
		c.role = RoleHead
	case i == len(m)-1:
		c.role = RoleTail
	default:
		c.role = RoleMiddle
	}
	if i > 0 {
		c.pred = m[i-1]
	}
	if i < len(m)-1 {
		c.succ = m[i+1]
		c.succIsEnd = i+1 == len(m)-1 && c.cfg.Joining == ""
	} else if c.cfg.Joining != "" {
		c.succ, c.succIsEnd = c.cfg.Joining, true
	}
}

// Propose appends data as the next entry at the head (or single member)
// and returns its seq. The runtime applies it locally and then calls
// Applied; the entry reaches the successor only after that.
func (c *Core) Propose(data []byte) (uint64, error) {
	if c.role != RoleHead && c.role != RoleSingle {
		return 0, fmt.Errorf("%w: %s is %s in epoch %d", ErrNotHead, c.opts.ID, c.role, c.cfg.Epoch)
	}
	if !c.complete() {
		return 0, fmt.Errorf("%w: %s may lack committed entries (applied %d, barrier %d, known %t)",
			ErrNotHead, c.opts.ID, c.applied, c.barrier.Seq, !c.barrier.Pending)
	}
	last := c.log.Last()
	if last-c.windowBase() >= uint64(c.opts.Window) {
		return 0, ErrWindowFull
	}
	c.log.Append(Entry{Seq: last + 1, Data: data})
	return last + 1, nil
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
	if u := &c.up; u.awaitSnap && c.applied >= u.snapFrom {
		// Entries received before the predecessor asked for a snapshot
		// got this replica where the predecessor can serve it from.
		u.awaitSnap = false
		c.sendHello()
	}
	c.settle()
}

// AcceptsSnapshot reports whether Restored(from, seq) would be accepted:
// the replica is a joiner or a member that is not complete (see
// Status.Complete), and seq is not older than its applied seq. Any replica
// may serve the snapshot (the core chose whom to ask), so from is not
// checked. A snapshot
// fetched after Ready.NeedSnapshot may arrive after a reconfiguration; the
// runtime checks this before installing it.
func (c *Core) AcceptsSnapshot(_ string, seq uint64) bool {
	return c.role != RoleNone && !c.complete() && seq >= c.applied
}

// Restored reports that the runtime replaced its state with a snapshot
// that from took at seq, after Ready.NeedSnapshot. The log is dropped, and so must
// be any entry of an earlier Ready.Apply the runtime has not applied yet.
// The replica then says Hello from seq. It is ignored unless
// AcceptsSnapshot(from, seq).
func (c *Core) Restored(from string, seq uint64) {
	if !c.AcceptsSnapshot(from, seq) {
		return
	}
	c.log.Reset(seq)
	c.applied, c.released = seq, seq
	c.ready.Apply = nil
	c.up.awaitSnap = false
	c.up.gapHello = false
	if c.pred != "" {
		c.sendHello()
	}
	c.settle()
}

// Hold reports that the runtime is serving a snapshot taken at seq to a
// joiner: entries above seq are kept until the successor acknowledges seq,
// so the joiner can continue from the snapshot. A configuration that leaves
// this replica without a successor releases the hold.
func (c *Core) Hold(seq uint64) {
	c.holding, c.hold = true, seq
	c.settle()
}

// Tick advances logical time for the resend and Hello timers.
func (c *Core) Tick() {
	if c.role == RoleNone {
		return
	}
	c.tickDown()
	c.tickUp()
	c.settle()
	c.ackUpstream(true) // the lazy acks deferred since the last tick
}

// tickDown acts when entries sent to the successor have gone without ack
// progress for ResendTicks: it sends again from the oldest entry the
// successor is not known to hold (go-back-N), or, if it is known to hold
// them all, an empty MsgEntries, which makes it repeat its ack (the ack,
// not the entries, may be what was lost).
//
// After it answered a Hello with MsgSnapshotNeeded, it sends nothing until
// the next Hello. That Hello can be lost, and a successor that restored a
// snapshot as far as the last seq it heard of believes itself caught up
// and does not say it again; so the question is asked again after
// ResendTicks, and a successor that no longer needs the snapshot answers
// with a Hello (see onSnapshotNeeded).
func (c *Core) tickDown() {
	d := &c.down
	if d.idle.Tick(d.ready && d.ack+1 < d.next, c.opts.ResendTicks) {
		d.next, d.greet = d.floor+1, true
	}
	if d.askAgain.Tick(d.asked && !d.ready, c.opts.ResendTicks) {
		c.send(Message{Type: MsgSnapshotNeeded, To: c.succ, Seq: c.log.Base})
	}
}

// tickUp sends Hello again when the predecessor has been silent for
// HelloTicks while this replica is behind it (or has not heard from it at
// all in this epoch).
func (c *Core) tickUp() {
	u := &c.up
	behind := !u.heard || c.log.Last() < u.predLast
	if u.quiet.Tick(c.pred != "" && !u.awaitSnap && behind, c.opts.HelloTicks) {
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

// Detail summarizes the replica in the chain's own terms (Status is the
// contract's summary).
func (c *Core) Detail() Status {
	s := Status{
		ID:          c.opts.ID,
		Role:        c.role,
		Epoch:       c.cfg.Epoch,
		Applied:     c.applied,
		Last:        c.log.Last(),
		Commit:      c.commit,
		Pending:     int(c.log.Last() - c.released),
		Retained:    c.log.Len(),
		Oldest:      c.log.Base,
		Predecessor: c.pred,
		Successor:   c.succ,
	}
	s.CaughtUp = c.caughtUp()
	s.Complete = c.complete()
	s.ReadReady = c.ReadReady()
	return s
}

// ReadReady is Detail().ReadReady without building the rest of Status,
// for the runtime's read path.
func (c *Core) ReadReady() bool {
	return (c.role == RoleTail || c.role == RoleSingle) && c.complete()
}

// caughtUp reports whether the replica has applied everything up to its
// predecessor's last seq as last reported in this epoch; see
// Status.CaughtUp.
func (c *Core) caughtUp() bool {
	switch {
	case c.role == RoleNone:
		return false
	case c.pred == "":
		return true
	}
	return c.up.heard && !c.up.awaitSnap && c.applied >= c.up.predLast
}

// complete reports whether this replica is a member holding every entry a
// head may have committed; see Status.Complete.
func (c *Core) complete() bool {
	switch c.role {
	case RoleNone, RoleJoining:
		return false
	}
	return c.barrier.Passed(c.applied)
}
