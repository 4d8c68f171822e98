// Package chain is the pure core of chain replication (van Renesse and
// Schneider, OSDI 2004): no goroutines, sockets, clocks or disks. The
// runtime feeds it events (a proposal at the head, a message from a
// neighbour, a tick, a new configuration, "I have applied up to seq") and
// collects effects with Ready (messages to send, entries to apply, the
// commit point that releases replies).
//
// Roles come from the configuration: the first member is the head, which
// orders writes and numbers them; the last is the tail, whose apply commits
// an entry; updates flow head to tail and acks flow back, the tail's
// straight to the head and the others lazily (see Core.ackUpstream). A
// Joining node
// sits behind the tail, receives every update but does not count for
// commit until the coordinator appends it to Members.
//
// Flow control: the head holds at most Options.Window unacknowledged
// entries. A tail with a joiner holds its acks back to JoinWindow beyond
// the joiner, so a slow joiner slows writes instead of making the tail
// buffer without bound. The price is that a promoted joiner may lack up
// to JoinWindow entries the old tail already committed; until it has them
// it is not complete (Status.Complete): it neither leads nor serves reads,
// and it learns how far it must go (its barrier) from its predecessor's
// first message in the new configuration, which also proves the
// predecessor has stopped acting on the old one.
package chain

import (
	"errors"

	"github.com/lockstep/lockstep/protocol"

	"github.com/lockstep/lockstep/protocol/internal/group"
)

// Config is one configuration (view) of a chain group, as the coordinator
// publishes it: Members in chain order (Members[0] is the head, the last
// is the tail) and at most one joiner behind the tail.
type Config = protocol.Config

// Entry is one update in the group's history.
type Entry = protocol.Entry

// MsgType names the messages replicas exchange.
type MsgType uint8

const (
	// MsgHello goes from a replica to its predecessor when the link is
	// new (new configuration, reconnect) or looks stuck: "I am your
	// successor in Epoch and have applied up to Seq; send from Seq+1".
	MsgHello MsgType = iota + 1
	// MsgEntries carries consecutive entries to the successor, or none
	// (to answer a Hello, or to ask for the ack again). Seq is the
	// sender's last seq, or its barrier if higher (see Status.Complete),
	// so a joiner can tell when it has caught up. Acked is the sender's
	// own ack from downstream in this epoch: every replica from the
	// recipient to the end of the chain has applied up to it, which is
	// how a middle learns of the acks the tail sends the head directly.
	MsgEntries
	// MsgAck tells the recipient that every replica from the sender to
	// the end of the chain has applied up to Seq. Acks go to the
	// predecessor, and from the tail of a chain of three or more also
	// straight to the head (see Core.ackUpstream).
	MsgAck
	// MsgSnapshotNeeded answers a Hello whose Seq is older than anything
	// the predecessor still holds: the successor must fetch a snapshot
	// (Seq is the oldest seq the predecessor could send from: a Hello
	// with Seq at least this one would be served from its log).
	MsgSnapshotNeeded
)

// Message is what replicas send each other. Every message carries the
// sender's epoch; a replica drops messages from any other epoch.
type Message struct {
	Type    MsgType
	From    string
	To      string
	Epoch   uint64
	Seq     uint64
	Acked   uint64 // MsgEntries only; see MsgEntries
	Entries []Entry
}

// envelope is m's addressing, which the checks of package group read.
func (m Message) envelope() group.Envelope {
	return group.Envelope{Type: m.Type, From: m.From, To: m.To, Epoch: m.Epoch}
}

// Role is a replica's place in the current configuration.
type Role uint8

const (
	RoleNone    Role = iota // not in the configuration
	RoleHead                // first of several members
	RoleMiddle              // neither first nor last
	RoleTail                // last of several members
	RoleSingle              // the only member: head and tail at once
	RoleJoining             // behind the tail, catching up
)

// Errors the core returns; all but ErrUnexpectedMessage are the
// contract's (package protocol).
var (
	// ErrNotHead: Propose was called on a replica that is not the head.
	ErrNotHead = protocol.ErrNotLeader
	// ErrWindowFull: the head holds Window unacknowledged entries; the
	// caller waits for the commit point to advance and retries.
	ErrWindowFull = protocol.ErrWindowFull
	// ErrStaleEpoch: a message from another epoch was refused.
	ErrStaleEpoch = protocol.ErrStaleEpoch
	// ErrUnexpectedMessage: a message of the current epoch that does not
	// fit this replica's place in the chain (another recipient, a sender
	// that is not the right neighbour, an unknown type, a successor that
	// claims more history than this replica has) was dropped.
	ErrUnexpectedMessage = errors.New("lockstep: unexpected chain message")
	// ErrInvalidConfig: a configuration without members, with an empty or
	// repeated name, or with epoch 0.
	ErrInvalidConfig = protocol.ErrInvalidConfig
)

// errs are the sentinels that package group's checks of a message wrap.
var errs = group.Errors{StaleEpoch: ErrStaleEpoch, Unexpected: ErrUnexpectedMessage}

// String names the role for logs and status output.
func (r Role) String() string {
	switch r {
	case RoleNone:
		return "none"
	case RoleHead:
		return "head"
	case RoleMiddle:
		return "middle"
	case RoleTail:
		return "tail"
	case RoleSingle:
		return "single"
	case RoleJoining:
		return "joining"
	}
	return "unknown"
}

// String names the message type for logs.
func (t MsgType) String() string {
	switch t {
	case MsgHello:
		return "hello"
	case MsgEntries:
		return "entries"
	case MsgAck:
		return "ack"
	case MsgSnapshotNeeded:
		return "snapshot-needed"
	}
	return "unknown"
}
