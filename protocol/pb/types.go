// Package pb is the pure core of primary-backup replication in the style of
// VMware FT (Scales et al., "The design of a practical system for
// fault-tolerant virtual machines", 2010), at the level of key-value
// updates: no goroutines, sockets, clocks or disks. The runtime feeds it
// events (a proposal at the primary, a message from a peer, a tick, a new
// configuration, "I have applied up to seq") and collects effects with
// Ready (messages to send, entries to apply, the commit point that releases
// replies, a snapshot to fetch). Its shape is that of package chain, so one
// runtime can drive either.
//
// Roles come from the configuration: the first member is the primary,
// which orders updates and sends each one to every backup in parallel (the
// logging channel); the other members are backups, which apply the entries
// in order and acknowledge them directly to the primary. A Joining node
// receives a snapshot from the primary and then every entry, but does not
// count for commit until the coordinator makes it a backup.
//
// Output rule: the primary's commit point is the smallest seq acknowledged
// by every backup of the configuration (and applied by the primary), and a
// reply is released only once the commit point passes its seq. The primary
// keeps accepting proposals meanwhile, up to Options.Window entries that
// any one peer has not acknowledged (VM-FT's throttling of a slow backup).
//
// Failover: the coordinator promotes a backup by publishing a configuration
// with it first. Logs may then differ: a backup may lack entries the new
// primary has, or hold entries from the old primary that the new one never
// received. Every log belongs to a lineage, named by the epoch in which its
// primary took office; a backup's Hello names its lineage and last seq, and
// the primary accepts it only if that proves the backup's log a prefix of
// its own (same lineage, or the lineage the primary came from and no
// further than where it took office). Entries the backup lacks are then
// sent from the primary's log; any other backup is told to fetch a
// snapshot instead of keeping a divergent suffix.
//
// Completeness: a replica is complete when it holds every entry any primary
// may have released a reply for. Members of the first configuration are
// complete; a joiner is not, and a joiner made backup becomes complete once
// it has applied up to the primary's last seq as of the primary's first
// message in the new configuration (which also proves the primary has left
// the old one, where it could commit without the joiner). Only a complete
// backup may be promoted, and a primary that is not complete refuses
// proposals.
package pb

import (
	"errors"

	"github.com/lockstep/lockstep/protocol"

	"github.com/lockstep/lockstep/protocol/internal/group"
)

// Config is one configuration (view) of a primary-backup group, as the
// coordinator publishes it: Members[0] is the primary, the rest are
// backups, and at most one node catches up to become a backup.
type Config = protocol.Config

// Entry is one update in the group's history.
type Entry = protocol.Entry

// MsgType names the messages replicas exchange.
type MsgType uint8

const (
	// MsgHello goes from a backup or joiner to the primary when the link
	// is new (new configuration, reconnect, restored snapshot) or looks
	// stuck: "in Epoch my log ends at Seq (received, not necessarily
	// applied) and belongs to lineage Lineage; send from Seq+1". Commit
	// is the highest commit point the sender knows of: a log that ends
	// there is all committed, and a prefix of any primary's that reaches
	// as far.
	MsgHello MsgType = iota + 1
	// MsgEntries carries consecutive entries from the primary, or none (to
	// answer a Hello, or to ask for the ack again). Seq is the primary's
	// last seq, Lineage its lineage, and Commit its commit point, below
	// which a backup need not keep entries.
	MsgEntries
	// MsgAck tells the primary that the sender has applied every entry up
	// to Seq. Acks are cumulative.
	MsgAck
	// MsgSnapshotNeeded answers a Hello the primary cannot serve from its
	// log: the sender's log is not a prefix of the primary's, or the
	// primary no longer holds the entries after it. Seq repeats the Hello's
	// Seq, so that a late answer to an old Hello can be recognized, and
	// Lineage is the primary's lineage, which a snapshot taken from it
	// belongs to.
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
	Lineage uint64
	Commit  uint64
	Entries []Entry
}

// envelope is m's addressing, which the checks of package group read.
func (m Message) envelope() group.Envelope {
	return group.Envelope{Type: m.Type, From: m.From, To: m.To, Epoch: m.Epoch}
}

// Role is a replica's place in the current configuration; package
// checkpoint's roles are the same.
type Role = group.Role

const (
	RoleNone    = group.RoleNone    // not in the configuration
	RolePrimary = group.RolePrimary // the first member: orders updates
	RoleBackup  = group.RoleBackup  // any other member
	RoleJoining = group.RoleJoining // the configuration's joiner, catching up
)

// Errors the core returns; all but ErrUnexpectedMessage are the
// contract's (package protocol).
var (
	// ErrNotPrimary: Propose was called on a replica that is not a
	// primary ready to order updates.
	ErrNotPrimary = protocol.ErrNotLeader
	// ErrWindowFull: some peer has Window unacknowledged entries; the
	// caller waits for acknowledgements (the commit point) and retries.
	ErrWindowFull = protocol.ErrWindowFull
	// ErrStaleEpoch: a message from another epoch was refused.
	ErrStaleEpoch = protocol.ErrStaleEpoch
	// ErrUnexpectedMessage: a message of the current epoch that does not
	// fit this replica's role (another recipient, a sender that is not
	// the primary or one of its peers, an unknown type, an ack for a link
	// the primary has not accepted) was dropped.
	ErrUnexpectedMessage = errors.New("lockstep: unexpected primary-backup message")
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
	case MsgEntries:
		return "entries"
	case MsgAck:
		return "ack"
	case MsgSnapshotNeeded:
		return "snapshot-needed"
	}
	return "unknown"
}
