// Package protocol is the contract between a replication runtime and the
// pure protocol cores under it (protocol/chain, protocol/pb,
// protocol/checkpoint): one Core interface, in the shape of etcd-io/raft's
// RawNode, that the runtime (package replica) and the simulations (package
// sim) drive alike. Events go in (a configuration, a proposal, an encoded
// message from a peer, a tick, "the state machine has applied up to seq",
// a snapshot restored, an epoch closed) and effects come out of Ready
// (messages to send, entries to apply, the commit point that releases
// replies, a snapshot to fetch, an epoch to close).
//
// A core speaks of replicas by id (a configuration's member names) and
// carries its messages encoded: the runtime never sees a protocol's
// message types, and no runtime decision depends on which protocol runs;
// where the protocols differ, Status says how (the read gate, whether the
// replica executes ahead of replication, epoch statistics).
package protocol

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Errors the cores return, wrapped with %w and checked with errors.Is.
// The cores keep their own names for them as aliases (chain.ErrWindowFull
// is ErrWindowFull).
var (
	// ErrWindowFull: the replica that orders writes holds as much
	// unacknowledged work as its window allows; the caller waits for the
	// commit point to advance and proposes again.
	ErrWindowFull = errors.New("lockstep: replication window full")
	// ErrNotLeader: Propose (or CloseEpoch) was called on a replica that
	// does not order writes now (not the head or primary, or one that may
	// still lack committed entries).
	ErrNotLeader = errors.New("lockstep: not the replica that orders writes")
	// ErrStaleEpoch: a message of another epoch than the core's was
	// refused. Every such refusal wraps it.
	ErrStaleEpoch = errors.New("lockstep: stale epoch")
	// ErrFutureEpoch: the refused message is from an epoch newer than the
	// core's (whose configuration has not reached this replica yet). A
	// refusal that wraps it also wraps ErrStaleEpoch; the runtime keeps
	// such a message and steps it again after the next configuration.
	ErrFutureEpoch = errors.New("lockstep: message from a newer epoch")
	// ErrInvalidConfig: a configuration without members, with an empty or
	// repeated name, or with epoch 0.
	ErrInvalidConfig = errors.New("lockstep: invalid configuration")
	// ErrNoEpochs: CloseEpoch was called on a core that replicates
	// entries, not epochs of state.
	ErrNoEpochs = errors.New("lockstep: protocol does not replicate in epochs")
)

// Entry is one update in a group's history: what the runtime applies to
// its state machine at Seq.
type Entry struct {
	Seq  uint64
	Data []byte // an encoded statemachine.Update (or a checkpoint's delta); opaque to the core
}

// Config is one configuration (view) of a group as a core sees it. Epoch
// grows by one with every change; Members[0] orders writes (a chain's head,
// a primary), and a chain's members are in chain order.
type Config struct {
	Epoch   uint64
	Members []string
	Joining string // a node catching up, or ""
}

// Validate reports whether c is a configuration a coordinator may publish:
// epoch above 0, at least one member, no empty or repeated names, and a
// joiner that is not already a member.
func (c Config) Validate() error {
	if c.Epoch == 0 {
		return fmt.Errorf("%w: epoch 0", ErrInvalidConfig)
	}
	if len(c.Members) == 0 {
		return fmt.Errorf("%w: no members", ErrInvalidConfig)
	}
	names := slices.Clip(c.Members)
	if c.Joining != "" {
		names = append(names, c.Joining)
	}
	for i, n := range names {
		if n == "" || slices.Contains(names[:i], n) {
			return fmt.Errorf("%w: empty or repeated name %q", ErrInvalidConfig, n)
		}
	}
	return nil
}

// Outbox holds a Ready's messages until the runtime encodes and sends
// them, which it does after releasing its lock, into a buffer of its own:
// a core's outbox is its typed message slice, so nothing is allocated per
// message.
type Outbox interface {
	Len() int
	// Encode appends message i to b and names its destination.
	Encode(i int, b []byte) (to string, out []byte)
}

// Ready is the effects a core has accumulated since the last call to
// Core.Ready. The caller owns the slices; Entry.Data is shared with the
// core and must not be modified.
type Ready struct {
	// Messages are to be sent, in this order per destination; nil for
	// none.
	Messages Outbox
	// Apply holds entries for the runtime to apply in order, consecutive
	// and continuing those of earlier Readies, and then report with
	// Core.Applied: entries from upstream, a checkpoint to install (one
	// entry, applied as one batch), or a new primary's empty checkpoint
	// over its own state. A replica's own proposals are never listed: the
	// runtime applies those itself.
	Apply []Entry
	// Commit is a seq such that the replies of writes (and gated reads)
	// up to it may be released; 0 means no change. A runtime whose state
	// machine tracks speculative changes (Status.Speculative) also tells
	// it the commit point.
	Commit uint64
	// NeedSnapshot names the replica to fetch a snapshot from, or "". The
	// runtime fetches it, checks Core.AcceptsSnapshot, installs it, calls
	// Core.Restored, and keeps retrying (or waits for a new
	// configuration) if the transfer fails.
	NeedSnapshot string
	// TakeDelta asks the runtime to close the open epoch, at once and
	// under the same lock: take the delta of what the state machine
	// changed since the last one and hand it to Core.CloseEpoch. Only a
	// core that replicates in epochs (checkpoint) asks.
	TakeDelta bool
}

// Core is a replication protocol for one replica of one group. It is pure
// (no goroutines, sockets, clocks or disks; time comes as Tick or an
// injected clock) and not safe for concurrent use: the runtime serializes
// every call, like etcd-io/raft's RawNode.
type Core interface {
	// SetConfig installs cfg if its epoch is newer than the core's and it
	// is valid; older, repeated and invalid configurations are ignored.
	SetConfig(cfg Config)
	// Propose numbers data as the next write at the replica that orders
	// writes and returns its seq; the runtime applies it at once and
	// reports it with Applied. It refuses with ErrWindowFull while the
	// window is full and with ErrNotLeader elsewhere.
	Propose(data []byte) (uint64, error)
	// Step decodes and steps a message from a peer. A message of another
	// epoch is refused with ErrStaleEpoch (and ErrFutureEpoch if newer).
	Step(payload []byte) error
	// Applied reports that the runtime has applied (and made durable as
	// its policy requires) everything up to seq: Ready.Apply entries and
	// its own proposals.
	Applied(seq uint64)
	// AcceptsSnapshot reports whether Restored(from, seq) would be
	// accepted; a snapshot fetched after Ready.NeedSnapshot may arrive
	// after a reconfiguration, so the runtime asks before installing it.
	AcceptsSnapshot(from string, seq uint64) bool
	// Restored reports that the runtime replaced its state with a snapshot
	// that from took at seq. Entries of earlier Readies not applied yet
	// must be dropped.
	Restored(from string, seq uint64)
	// Hold reports that the runtime serves a snapshot of its state at
	// seq: what follows seq is kept until the replica installing it can
	// continue from the stream.
	Hold(seq uint64)
	// Tick advances logical time for the resend and Hello timers.
	Tick()
	// CloseEpoch hands the core the delta the runtime took after
	// Ready.TakeDelta: what the state machine changed up to its applied
	// seq seq. A core without epochs returns ErrNoEpochs; an error means
	// the delta is lost, a local failure.
	CloseEpoch(seq uint64, delta []byte) error
	// HasReady reports whether Ready would return any effect.
	HasReady() bool
	// Ready takes the effects accumulated since the last call.
	Ready() Ready
	// Status summarizes the replica in protocol-neutral terms. It does not
	// allocate, so the read path may call it.
	Status() Status
}

// Role is a replica's place in its group, whichever protocol runs it.
type Role uint32

const (
	RoleNone Role = iota
	RoleJoining
	RoleHead
	RoleMiddle
	RoleTail
	RoleSingle // the only member of a chain: head and tail at once
	RolePrimary
	RoleBackup
)

// String is the word `lockstep status` and INFO use for the role.
func (r Role) String() string {
	switch r {
	case RoleJoining:
		return "joining"
	case RoleHead:
		return "head"
	case RoleMiddle:
		return "middle"
	case RoleTail:
		return "tail"
	case RoleSingle:
		return "single"
	case RolePrimary:
		return "primary"
	case RoleBackup:
		return "backup"
	}
	return "none"
}

// Orders reports whether the role orders writes (a chain's head, a
// primary): writes sent elsewhere are forwarded to it.
func (r Role) Orders() bool { return r == RoleHead || r == RoleSingle || r == RolePrimary }

// AnswersReads reports whether the role answers reads (a chain's tail, a
// primary): reads sent elsewhere are forwarded to it.
func (r Role) AnswersReads() bool { return r == RoleTail || r == RoleSingle || r == RolePrimary }

// ReadGate is what the reply of a read answered from a replica's state
// waits for.
type ReadGate uint8

const (
	// GateNone: nothing; the state holds only committed writes (a chain's
	// tail).
	GateNone ReadGate = iota
	// GateApplied: the commit point reaching the applied seq the read saw
	// (a primary, whose applied writes may not be committed yet).
	GateApplied
	// GateSpeculative: the commit point reaching the newest speculative
	// write the read could observe, as the state machine tracks it
	// (statemachine.DeltaTracker.SpeculativeSeq): a read of committed
	// state goes out at once.
	GateSpeculative
)

// Status is a core's summary in protocol-neutral form, for the runtime,
// the coordinator and INFO.
type Status struct {
	Role    Role
	Epoch   uint64
	Applied uint64 // the state's seq as far as the core knows (at a checkpoint primary, its last executed write)
	Last    uint64 // the newest seq received or proposed
	Commit  uint64
	Pending int // entries (or checkpoints) held for peers
	// Retained and RetainedBytes are the entries held in all (Pending and
	// the committed history kept for members that rejoin) and their data
	// size; Oldest is the seq a rejoining member's state must have
	// reached to continue from them. Zero for a core that keeps none.
	Retained      int
	RetainedBytes int
	Oldest        uint64
	// CaughtUp: the replica has applied everything its upstream last
	// reported in this epoch; the coordinator promotes a caught-up joiner.
	CaughtUp bool
	// Complete: a member holding every write that may have been
	// acknowledged; only a complete member may take over.
	Complete bool
	// ReadReady: the replica may answer reads from its state, gated as
	// ReadGate says.
	ReadReady bool
	ReadGate  ReadGate
	// ServesSnapshot: the replica's state is a point of the group's
	// history, so it may be streamed to a replica that asks for one.
	ServesSnapshot bool
	// Speculative: the replica executes writes ahead of replication (a
	// checkpoint primary): its state machine must track what they change
	// (TrackChanges), for the deltas that close epochs and for the read
	// gate, and learn the commit point.
	Speculative bool
	// Lag, at a primary, is the most entries (or checkpoints) any backup
	// or joiner is behind: what throttles writes. 0 elsewhere.
	Lag uint64
	// Epochs describes the epochs of a core that replicates in them; it
	// is zero (Interval 0) for the others.
	Epochs EpochStatus
}

// EpochStatus is what a core that replicates state in epochs reports of
// them (INFO's lockstep_checkpoint_* lines, /metrics).
type EpochStatus struct {
	Interval  time.Duration // the epoch length; 0: the core has no epochs
	Made      uint64        // checkpoints this replica made as primary
	Bytes     uint64        // their total size
	LastBytes uint64        // the size of the last one
	// Deferred counts epoch closes put off because a backup lagged a full
	// window.
	Deferred   uint64
	DirtyBytes int // the state changed since the last checkpoint, as the state machine last estimated it
}
