package replica

import (
	"errors"
	"fmt"
	"time"

	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/protocol/chain"
	"github.com/lockstep/lockstep/statemachine"
)

// Protocol names, as configurations and --protocol spell them.
const (
	ProtocolChain         = coord.ProtocolChain
	ProtocolPrimaryBackup = coord.ProtocolPrimaryBackup
	ProtocolCheckpoint    = coord.ProtocolCheckpoint
)

// ErrUnknownProtocol: a configuration or option names a protocol this
// build does not run.
var ErrUnknownProtocol = errors.New("lockstep: unknown replication protocol")

// errWindowFull is a core's ErrWindowFull, whichever the protocol.
var errWindowFull = errors.New("lockstep: replication window full")

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

// orders reports whether the role orders writes (a chain's head, a
// primary): writes sent elsewhere are forwarded to it.
func (r Role) orders() bool { return r == RoleHead || r == RoleSingle || r == RolePrimary }

// answersReads reports whether the role answers reads (a chain's tail, a
// primary): reads sent elsewhere are forwarded to it.
func (r Role) answersReads() bool { return r == RoleTail || r == RoleSingle || r == RolePrimary }

// effects is a core's Ready in protocol-neutral form.
type effects struct {
	apply        []chain.Entry // chain.Entry and pb.Entry are one type
	commit       uint64
	needSnapshot string
	msgs         outbox
}

// outbox holds a Ready's messages until they are encoded and sent, which
// happens after the replica's lock is released.
type outbox interface {
	Len() int
	// Encode appends message i to b and names its destination.
	Encode(i int, b []byte) (to string, out []byte)
}

// coreStatus is a core's Status in protocol-neutral form.
type coreStatus struct {
	Role     Role
	Epoch    uint64
	Applied  uint64
	Last     uint64
	Commit   uint64
	Pending  int
	CaughtUp bool
	Complete bool
	// ReadReady: the replica may answer reads from its state. A chain tail
	// answers at once; a primary holds the reply until its commit point
	// reaches the applied seq it read at (readGated).
	ReadReady bool
	readGated bool
	// Lag, at a primary, is the most entries any backup or joiner is
	// behind (what throttles writes); 0 elsewhere.
	Lag uint64
}

// protocolCore is what the runtime needs of a protocol core. Both cores
// are pure and unsynchronized; the runtime calls them under its lock.
type protocolCore interface {
	Protocol() string
	// SetConfig installs cfg and reports whether this process (name and
	// incarnation) is in it.
	SetConfig(cfg coord.Config, name, incarnation string) (member bool)
	// Propose returns errWindowFull when the window is full, another
	// error when this replica may not order writes.
	Propose(data []byte) (uint64, error)
	// Step decodes and steps a message from a peer.
	Step(payload []byte) error
	Applied(seq uint64)
	AcceptsSnapshot(from string, seq uint64) bool
	Restored(from string, seq uint64)
	Hold(seq uint64)
	Tick()
	// ReadReady reports whether reads may be answered from this replica's
	// state, and whether their replies must wait for the commit point to
	// reach the applied seq they read at (see coreStatus.ReadReady).
	ReadReady() (ok, gated bool)
	// ServesSnapshot reports whether this replica's state may be streamed
	// to a replica that asks for a snapshot.
	ServesSnapshot() bool
	Ready() effects
	Status() coreStatus
}

// newCore builds the core for protocol.
func newCore(protocol, id string, opts CoreOptions, sm statemachine.StateMachine) (protocolCore, error) {
	applied := sm.AppliedSeq()
	switch protocol {
	case ProtocolChain, "":
		return newChainCore(id, opts, applied), nil
	case ProtocolPrimaryBackup:
		return newPBCore(id, opts, applied), nil
	case ProtocolCheckpoint:
		return newCheckpointCore(id, opts, applied, sm)
	}
	return nil, fmt.Errorf("%w: %q (want %s, %s or %s)", ErrUnknownProtocol, protocol, ProtocolChain, ProtocolPrimaryBackup, ProtocolCheckpoint)
}

// epochCloser is implemented by cores that replicate state in epochs
// (checkpoint): the runtime closes an epoch every CheckpointInterval, or
// early once dirtyPastBound, under its lock.
type epochCloser interface {
	closeEpoch() error
	dirtyPastBound() bool
	appendInfo(b []byte) []byte
}

// CoreOptions tune a protocol core; zero fields take the core's defaults.
type CoreOptions struct {
	// Window bounds the entries the writer may hold that a replica behind
	// it has not acknowledged; writes wait beyond it.
	Window int
	// MaxBatch is the most entries one message carries.
	MaxBatch int
	// CheckpointInterval is the epoch length of checkpoint replication
	// (default 20 ms); CheckpointBytes the dirty state past which an
	// epoch is cut early (default 4 MiB); CheckpointWindow the most
	// checkpoints in flight to a backup (default 4).
	CheckpointInterval time.Duration
	CheckpointBytes    int
	CheckpointWindow   int
}

// memberIDs converts the coordinator's members into core ids. A member
// slot belongs to one process incarnation: a restarted process with the
// same name is a new node that must rejoin, so its name is hidden from the
// core (as name#incarnation) until then.
func memberIDs(cfg coord.Config, name, incarnation string) (members []string, joining string, member bool) {
	id := func(m coord.Member) string {
		if m.Name != name {
			return m.Name
		}
		if m.Incarnation == incarnation {
			member = true
			return m.Name
		}
		return m.Name + "#" + m.Incarnation
	}
	for _, m := range cfg.Members {
		members = append(members, id(m))
	}
	if cfg.Joining != nil {
		joining = id(*cfg.Joining)
	}
	return members, joining, member
}
