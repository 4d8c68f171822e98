package replica

import (
	"errors"
	"fmt"
	"time"

	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/protocol"
	"github.com/lockstep/lockstep/protocol/chain"
	"github.com/lockstep/lockstep/protocol/checkpoint"
	"github.com/lockstep/lockstep/protocol/pb"
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

// Role is a replica's place in its group, whichever protocol runs it: the
// contract's role, which each core reports.
type Role = protocol.Role

// The roles, as the contract names them.
const (
	RoleNone    = protocol.RoleNone
	RoleJoining = protocol.RoleJoining
	RoleHead    = protocol.RoleHead
	RoleMiddle  = protocol.RoleMiddle
	RoleTail    = protocol.RoleTail
	RoleSingle  = protocol.RoleSingle
	RolePrimary = protocol.RolePrimary
	RoleBackup  = protocol.RoleBackup
)

// Checkpoint defaults (Remus's epoch is tens of milliseconds).
const (
	DefaultCheckpointInterval = checkpoint.DefaultInterval
	DefaultCheckpointBytes    = checkpoint.DefaultMaxDirty // an epoch is cut early past this much dirty state
)

// newCore builds the core for proto, for a state machine at sm's applied
// seq. Checkpoint replication needs a machine that tracks what its writes
// change: its core measures epochs on the clock the runtime hands it and
// asks the machine how much state is dirty.
func newCore(proto, id string, opts CoreOptions, sm statemachine.StateMachine) (protocol.Core, error) {
	applied := sm.AppliedSeq()
	switch proto {
	case ProtocolChain, "":
		return chain.New(chain.Options{
			ID: id, Window: opts.Window, MaxBatch: opts.MaxBatch, RetainBytes: opts.RetainBytes, Restarted: opts.Restarted,
		}, applied), nil
	case ProtocolPrimaryBackup:
		return pb.New(pb.Options{
			ID: id, Window: opts.Window, MaxBatch: opts.MaxBatch, RetainBytes: opts.RetainBytes,
			Committed: opts.Committed, Restarted: opts.Restarted,
		}, applied), nil
	case ProtocolCheckpoint:
		t, ok := sm.(statemachine.DeltaTracker)
		if !ok {
			return nil, fmt.Errorf("%w: checkpoint replication needs a state machine that tracks its changes (%T does not)", ErrUnknownProtocol, sm)
		}
		now := opts.now
		if now == nil {
			now = time.Now
		}
		start := now()
		return checkpoint.New(checkpoint.Options{
			ID:         id,
			Window:     opts.CheckpointWindow,
			MaxChunk:   opts.CheckpointChunk,
			Clock:      func() time.Duration { return now().Sub(start) },
			Interval:   opts.CheckpointInterval,
			DirtyBytes: t.DirtyBytes,
			MaxDirty:   opts.CheckpointBytes,
			Restarted:  opts.Restarted,
		}, applied), nil
	}
	return nil, fmt.Errorf("%w: %q (want %s, %s or %s)", ErrUnknownProtocol, proto, ProtocolChain, ProtocolPrimaryBackup, ProtocolCheckpoint)
}

// CoreOptions tune a protocol core; zero fields take the core's defaults.
type CoreOptions struct {
	// Window bounds the entries the writer may hold that a replica behind
	// it has not acknowledged; writes wait beyond it.
	Window int
	// MaxBatch is the most entries one message carries.
	MaxBatch int
	// RetainBytes is how much history a chain or primary-backup replica
	// keeps for members that rejoin on a state they kept (chain.Options,
	// pb.Options).
	RetainBytes int
	// CheckpointInterval is the epoch length of checkpoint replication
	// (default 20 ms); CheckpointBytes the dirty state past which an
	// epoch is cut early (default 4 MiB); CheckpointWindow the most
	// checkpoints in flight to a backup (default 4).
	CheckpointInterval time.Duration
	CheckpointBytes    int
	CheckpointWindow   int
	// CheckpointChunk is the largest piece of a checkpoint one message
	// carries (default 1 MiB); the simulation makes it small, so that a
	// lost message can be a middle chunk.
	CheckpointChunk int
	// Restarted is set by the runtime when the replica runs on state kept
	// from an earlier process (Options.Recovered).
	Restarted bool
	// Committed is set by the runtime when the state was kept from a
	// clean stop (Options.Committed): a primary-backup core then names it
	// all committed, which lets the primary stream from it.
	Committed bool

	// now is the runtime's clock (Options.Now), on which a checkpoint core
	// times its epochs; nil is time.Now.
	now func() time.Time
}

// setCoreConfig hands core the coordinator's configuration in core ids and
// reports whether this process (name and incarnation) is in it.
func setCoreConfig(core protocol.Core, cfg coord.Config, name, incarnation string) (member bool) {
	members, joining, member := memberIDs(cfg, name, incarnation)
	core.SetConfig(protocol.Config{Epoch: cfg.Epoch, Members: members, Joining: joining})
	return member
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
