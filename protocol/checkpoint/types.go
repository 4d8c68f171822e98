// Package checkpoint is the pure core of checkpoint replication in the
// style of Remus (Cully et al., "Remus: High availability via asynchronous
// virtual machine replication", NSDI 2008), at the level of key-value
// state: no goroutines, sockets, clocks or disks. Its shape is that of
// package pb (events in, Ready out, Status), so one runtime can drive
// either.
//
// The primary does not ship updates one by one. Its runtime executes
// client writes at once on the primary's store (speculatively: their
// replies wait; Propose only numbers them), tracks the keys they dirty,
// and at the end of every epoch hands the core a checkpoint. The core
// decides when an epoch ends (Options.Interval on its injected clock, or
// earlier when the dirty state its runtime reports passes MaxDirty) and
// asks for it with protocol.Ready.TakeDelta; the runtime answers with
// CloseEpoch. A checkpoint is the final value or tombstone of every key
// dirtied in the epoch, as opaque bytes, named by the store seq the
// epoch's writes end at. The core sends the checkpoint to every backup in
// chunks followed by a commit marker (the Final flag of the last chunk);
// a backup installs a checkpoint only once it holds all of it, in one
// atomic batch, so its state is always at a checkpoint boundary of the
// primary's history (or at the point a snapshot was taken), never in the
// middle of an epoch. Installing checkpoint (p, q] over the primary's
// state at any s with p <= s < q yields its state at q, because the
// checkpoint carries final values: this is what lets a snapshot taken in
// the middle of an open epoch be continued by the next checkpoint.
//
// Output rule: the primary's commit point is the highest checkpoint seq
// every backup of the configuration has installed and acknowledged; a
// reply (write or read) for store seq s is released once the commit point
// reaches s. The primary keeps at most Options.Window checkpoints that one
// peer has not acknowledged; beyond that Checkpoint refuses and the
// runtime keeps accumulating dirty state, which throttles a primary whose
// backup is slow.
//
// Lineage and failover follow package pb: every history is named by the
// epoch in which its primary took office, a primary remembers the lineage
// it came from and its state then (the fork), and it accepts a peer's
// Hello only when the peer's state is provably a point of its own
// history that its retained checkpoints continue; any other peer fetches
// a snapshot (which may take it back to an older seq). Backups keep no
// checkpoints once installed, so after a failover only the backups at
// exactly the new primary's fork continue without a snapshot.
//
// Completeness: members of the first configuration are complete; a
// joiner made backup becomes complete once it has installed up to the
// primary's last checkpoint seq as of the primary's first message in the
// new configuration. Only a complete backup may be promoted, and a
// primary that is not complete refuses checkpoints.
package checkpoint

import (
	"errors"

	"github.com/lockstep/lockstep/protocol"

	"github.com/lockstep/lockstep/protocol/internal/group"
)

// Config is one configuration (view) of a checkpoint-replicated group, as
// the coordinator publishes it: Members[0] is the primary, the rest are
// backups, and at most one node catches up to become a backup.
type Config = protocol.Config

// Checkpoint is the state an epoch of the primary's writes left: Data is
// the runtime's encoding of the final value or tombstone of every key the
// epoch dirtied, opaque to the core, and Seq the store seq the epoch's
// writes end at. It is the contract's Entry: a backup applies a checkpoint
// as one entry, in one batch.
type Checkpoint = protocol.Entry

// MsgType names the messages replicas exchange.
type MsgType uint8

const (
	// MsgHello goes from a backup or joiner to the primary when the link
	// is new (new configuration, restored snapshot) or looks stuck: "in
	// Epoch my state is (or will be, once I have installed what I hold) at
	// store seq Seq of lineage Lineage; send what follows".
	MsgHello MsgType = iota + 1
	// MsgAccept answers a Hello the primary will serve: it streams every
	// checkpoint with a seq above the Hello's Seq from now on. Head is the
	// primary's last checkpoint seq and Lineage its lineage. The primary
	// also sends it (with Seq the last checkpoint it knows the peer
	// received) to ask for an ack again that may have been lost.
	MsgAccept
	// MsgChunk carries Data, the bytes of checkpoint Seq from Offset on.
	// Prev is the seq the checkpoint continues (the previous checkpoint's,
	// or the primary's fork), Head the primary's last checkpoint seq and
	// Lineage its lineage. Final marks the last chunk: it is the commit
	// marker, without which the checkpoint is never installed.
	MsgChunk
	// MsgAck tells the primary that the sender's state is at Seq:
	// installed (or restored), not just received; Head is the last
	// checkpoint it has received, which it will install. Acks are
	// cumulative.
	MsgAck
	// MsgSnapshotNeeded answers a Hello the primary cannot serve: the
	// sender's state is not provably a point of the primary's history, or
	// the primary no longer holds the checkpoints after it. Seq and Prev
	// repeat the Hello's Seq and Lineage, so that a late answer to a Hello
	// for a state the sender has left (by restoring a snapshot) can be
	// told apart, and Lineage is the primary's, which a snapshot taken
	// from it belongs to.
	MsgSnapshotNeeded
)

// Message is what replicas send each other. Every message carries the
// sender's epoch; a replica drops messages from any other epoch. Fields a
// type does not use are zero.
type Message struct {
	Type    MsgType
	From    string
	To      string
	Epoch   uint64
	Seq     uint64
	Prev    uint64
	Head    uint64
	Lineage uint64
	Offset  uint64
	Final   bool
	Data    []byte
}

// envelope is m's addressing, which the checks of package group read.
func (m Message) envelope() group.Envelope {
	return group.Envelope{Type: m.Type, From: m.From, To: m.To, Epoch: m.Epoch}
}

// Role is a replica's place in the current configuration; package pb's
// roles are the same.
type Role = group.Role

const (
	RoleNone    = group.RoleNone    // not in the configuration
	RolePrimary = group.RolePrimary // the first member: executes writes, makes checkpoints
	RoleBackup  = group.RoleBackup  // any other member
	RoleJoining = group.RoleJoining // the configuration's joiner, catching up
)

// Errors the core returns; ErrNotPrimary, ErrWindowFull, ErrStaleEpoch
// and ErrInvalidConfig are the contract's (package protocol).
var (
	// ErrNotPrimary: Propose or Checkpoint was called on a replica that is
	// not a complete primary, or has not installed what it received before
	// taking office.
	ErrNotPrimary = protocol.ErrNotLeader
	// ErrWindowFull: some peer has not acknowledged Window checkpoints.
	// The runtime keeps the dirty state, lets it grow, and retries later.
	ErrWindowFull = protocol.ErrWindowFull
	// ErrCheckpointOrder: Checkpoint was called with a seq not above the
	// previous checkpoint's, which would break the order backups install
	// in. It is a runtime bug.
	ErrCheckpointOrder = errors.New("lockstep: checkpoint seq out of order")
	// ErrStaleEpoch: a message from another epoch was refused.
	ErrStaleEpoch = protocol.ErrStaleEpoch
	// ErrUnexpectedMessage: a message of the current epoch that does not
	// fit this replica's role (another recipient, a sender that is not
	// the primary or one of its peers, an unknown type, an ack for a link
	// the primary has not accepted) was dropped.
	ErrUnexpectedMessage = errors.New("lockstep: unexpected checkpoint message")
	// ErrInvalidConfig: a configuration without members, with an empty or
	// repeated name, or with epoch 0.
	ErrInvalidConfig = protocol.ErrInvalidConfig
)

// errs are the sentinels that package group's checks of a message wrap.
var errs = group.Errors{StaleEpoch: ErrStaleEpoch, Unexpected: ErrUnexpectedMessage}

// String names the message type for logs.
func (t MsgType) String() string {
	switch t {
	case MsgHello:
		return "hello"
	case MsgAccept:
		return "accept"
	case MsgChunk:
		return "chunk"
	case MsgAck:
		return "ack"
	case MsgSnapshotNeeded:
		return "snapshot-needed"
	}
	return "unknown"
}
