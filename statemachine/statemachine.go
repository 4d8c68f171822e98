// Package statemachine defines the contract between lockstep's replication
// runtime and the service it replicates.
//
// The runtime never re-executes a client request on more than one replica.
// Instead the replica that orders requests (the chain head, the primary) calls
// Prepare once, which reads the current state and turns the request into a
// deterministic Update: every relative time already made absolute, every
// random choice already made, the reply already computed. Every replica then
// calls Apply with the same Update in the same order and reaches the same
// state. This is how the non-determinism the replication papers warn about
// (clocks, randomness) is captured exactly once.
package statemachine

import (
	"errors"
	"io"
)

// Env supplies the only sources of non-determinism a Prepare may consult. The
// runtime records nothing about Env itself: whatever Prepare derives from it
// must be written into the Update.
type Env interface {
	// NowMillis is the wall-clock time in Unix milliseconds.
	NowMillis() int64
	// Rand returns a uniformly random 64-bit value.
	Rand() uint64
}

// Kind says how the runtime routes a command.
type Kind uint8

const (
	// KindRead commands only observe state. They are answered from the local
	// replica (the chain tail, the primary) through Read and never replicated.
	KindRead Kind = iota + 1
	// KindWrite commands may change state. They go through Prepare on the
	// ordering replica and Apply everywhere.
	KindWrite
)

// String names the kind for logs and COMMAND output.
func (k Kind) String() string {
	switch k {
	case KindRead:
		return "read"
	case KindWrite:
		return "write"
	}
	return "unknown"
}

// Command describes one command a state machine accepts. Arity follows the
// Redis convention: a positive number is the exact argument count including
// the command name; a negative number -N means at least N.
type Command struct {
	Name     string // lower case
	Arity    int
	Kind     Kind
	FirstKey int // position of the first key argument, 0 if none
	LastKey  int // position of the last key argument; -1 means the last argument
	KeyStep  int
	Fast     bool // O(1) or O(log n), for COMMAND's flags
}

// Update is the encoded, deterministic state change Prepare produces. Its
// format belongs to the state machine; the runtime only stores and ships it.
// An Update must not be modified after it is returned: Apply may keep slices
// of it.
type Update []byte

// Common errors a StateMachine returns, wrapped with %w.
var (
	// ErrCorruptUpdate means Apply was given bytes it cannot decode. A replica
	// that sees it must stop: its state can no longer match its peers'.
	ErrCorruptUpdate = errors.New("lockstep: corrupt update")
	// ErrCorruptSnapshot means Restore was given a stream it cannot decode.
	ErrCorruptSnapshot = errors.New("lockstep: corrupt snapshot")
)

// StateMachine is a replicated service.
//
// Concurrency: the runtime serializes Prepare and Apply (one at a time, in
// sequence order) and runs Read only while no Prepare or Apply is running, so
// a multi-key read sees one state. OpenSnapshot is serialized with Apply too,
// but writing an open Snapshot may run concurrently with Apply: it shows the
// state as of one sequence number. Restore runs alone.
type StateMachine interface {
	// Commands lists every command the machine accepts, for routing, arity
	// checks and COMMAND replies.
	Commands() []Command
	// Lookup finds a command by its lower-case name.
	Lookup(name string) (Command, bool)

	// Prepare turns a write request (args[0] is the command name, as sent)
	// into an Update, reading the state that every earlier Update produced.
	// A request that changes nothing (SET NX on an existing key, INCR on a
	// non-integer) still yields an Update that carries its reply, so the
	// reply is ordered with the writes around it. An error means the replica
	// cannot read its own state and must stop.
	Prepare(args [][]byte, env Env) (Update, error)
	// Apply makes the Update's change, records seq as the last applied
	// sequence number in the same atomic step, and appends the RESP reply
	// to out.
	Apply(seq uint64, u Update, out []byte) ([]byte, error)
	// Read answers a read request from the current state, treating entries
	// that expired before nowMillis as absent, and appends the RESP reply.
	// A bad request is answered in the reply; an error, as Prepare's, means
	// the replica cannot read its own state and must stop.
	Read(args [][]byte, nowMillis int64, out []byte) ([]byte, error)
	// AppliedSeq is the sequence number of the last applied Update.
	AppliedSeq() uint64

	// OpenSnapshot captures the whole state as of AppliedSeq, cheaply;
	// the caller writes it out later and closes it.
	OpenSnapshot() (Snapshot, error)
	// Restore replaces the whole state with a stream written by a
	// Snapshot's Write. The state's AppliedSeq becomes the snapshot's.
	Restore(r io.Reader) error
}

// DeltaTracker is implemented by state machines that checkpoint
// replication can replicate by state instead of by operations: the primary
// records what its updates change and, once per epoch, hands the backups
// the final state of it as one Update. Many writes to one key in an epoch
// cost one record.
type DeltaTracker interface {
	// TrackChanges starts (forgetting anything recorded before) or stops
	// recording what Apply changes.
	TrackChanges(on bool)
	// DirtyBytes estimates the size of the Update TakeDelta would return.
	DirtyBytes() int
	// TakeDelta returns an Update that brings any state taken at or after
	// the previous TakeDelta (or the start of tracking) to the current
	// state (it may change nothing), and forgets what it recorded. The
	// Update is applied with Apply like any other and yields no reply.
	// Serialized with Apply.
	TakeDelta() (Update, error)
	// SpeculativeSeq is the newest update recorded and not yet reported
	// Committed that a read of args could observe, or 0: a reply to the
	// read waits only for that update to commit, so reads of committed
	// state go out at once.
	SpeculativeSeq(args [][]byte) uint64
	// Committed reports that every update up to seq is on every backup.
	Committed(seq uint64)
}

// Snapshot is a point-in-time image of a state machine. Taking one is
// cheap and may happen under the runtime's lock, so the image's Seq and the
// protocol's bookkeeping agree; writing it out is slow and happens outside,
// while updates continue to be applied.
type Snapshot interface {
	// Seq is the sequence number of the last update the image contains.
	Seq() uint64
	// Write streams the image. Every call writes the same bytes, so a
	// broken transfer can be resumed by writing again and skipping what
	// the receiver already has.
	Write(w io.Writer) error
	Close() error
}

// DataSnapshot is a Snapshot that can also list the user data it holds,
// record by record, without what the state machine keeps for itself. A
// backup that seeds another cluster needs exactly that: the keys, their
// values and absolute expiry times, and not the bytes of a replica's
// snapshot, whose layout belongs to the state machine and whose seq the
// new cluster does not share.
type DataSnapshot interface {
	Snapshot
	// DataKeys is the number of records ScanData visits.
	DataKeys() int64
	// ScanData calls fn for every record in ascending key order until fn
	// returns false. expireAt is in Unix milliseconds, 0 for none;
	// records that have expired but were not yet deleted are included.
	// The slices are valid only during the call.
	ScanData(fn func(key, value []byte, expireAt int64) bool) error
}
