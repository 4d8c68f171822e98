package replica

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/protocol/chain"
	"github.com/lockstep/lockstep/protocol/checkpoint"
	"github.com/lockstep/lockstep/statemachine"
)

// Checkpoint defaults (Remus's epoch is tens of milliseconds).
const (
	DefaultCheckpointInterval = 20 * time.Millisecond
	DefaultCheckpointBytes    = 4 << 20 // an epoch is cut early past this much dirty state
)

// cpCore adapts checkpoint.Core to protocolCore. Unlike the other
// protocols, the primary's writes do not go through the core one by one:
// Propose only numbers a write (the runtime executes it at once on its
// store, where the state machine records what it dirtied), and every
// epoch the runtime closes it (closeEpoch) into one checkpoint holding the
// final state of what the epoch changed. Backups install checkpoints
// through the same apply path as entries.
type cpCore struct {
	c        *checkpoint.Core
	sm       stateMachine
	max      int           // dirty bytes past which an epoch is cut early and writes wait for the window
	interval time.Duration // the epoch length, for INFO

	role  Role
	exec  uint64 // primary: the last store seq executed
	fresh bool   // primary: no checkpoint made since taking office

	stats cpStats
}

// stateMachine is what checkpoint replication needs of the machine.
type stateMachine interface {
	statemachine.StateMachine
	statemachine.DeltaTracker
}

// cpStats are counters for INFO and metrics.
type cpStats struct {
	made      atomic.Uint64 // checkpoints made by this primary
	bytes     atomic.Uint64 // their total size
	lastBytes atomic.Uint64
	deferred  atomic.Uint64 // epoch closes put off because the window was full
}

func newCheckpointCore(id string, opts CoreOptions, applied uint64, sm statemachine.StateMachine) (*cpCore, error) {
	tsm, ok := sm.(stateMachine)
	if !ok {
		return nil, fmt.Errorf("%w: checkpoint replication needs a state machine that tracks its changes (%T does not)", ErrUnknownProtocol, sm)
	}
	maxDirty := opts.CheckpointBytes
	if maxDirty <= 0 {
		maxDirty = DefaultCheckpointBytes
	}
	interval := opts.CheckpointInterval
	if interval <= 0 {
		interval = DefaultCheckpointInterval
	}
	return &cpCore{
		c:        checkpoint.New(checkpoint.Options{ID: id, Window: opts.CheckpointWindow}, applied),
		sm:       tsm,
		max:      maxDirty,
		interval: interval,
	}, nil
}

func (a *cpCore) Protocol() string { return ProtocolCheckpoint }

func (a *cpCore) SetConfig(cfg coord.Config, name, incarnation string) bool {
	members, joining, member := memberIDs(cfg, name, incarnation)
	a.c.SetConfig(checkpoint.Config{Epoch: cfg.Epoch, Members: members, Joining: joining})
	role := cpRole(a.c.Status().Role)
	if role != a.role {
		// Only a primary records what its writes change; it starts from
		// the state it holds, which its first checkpoint will cover.
		a.sm.TrackChanges(role == RolePrimary)
		a.exec = a.sm.AppliedSeq()
		a.fresh = role == RolePrimary
	}
	a.role = role
	return member
}

// Propose numbers a write at the primary; see cpCore. While the window is
// full and the open epoch has grown past its bound, writes wait.
func (a *cpCore) Propose([]byte) (uint64, error) {
	if a.role != RolePrimary || !a.c.ReadReady() {
		return 0, fmt.Errorf("%w: not a primary ready to execute writes", checkpoint.ErrNotPrimary)
	}
	if a.sm.DirtyBytes() > a.max && !a.c.CanCheckpoint() {
		return 0, errWindowFull
	}
	a.exec = max(a.exec, a.sm.AppliedSeq()) + 1
	return a.exec, nil
}

// closeEpoch makes the open epoch a checkpoint, if it has writes (or, for
// a primary new in office, if its state is not yet known to be on every
// backup) and the window has room; otherwise the epoch goes on. Called
// under the replica's lock. Everything that could make the core refuse
// the checkpoint is checked before the delta is taken, since a delta taken
// is forgotten by the machine; an error is a local failure.
func (a *cpCore) closeEpoch() error {
	if a.role != RolePrimary || !a.c.ReadReady() {
		return nil
	}
	if !a.c.CanCheckpoint() {
		a.stats.deferred.Add(1) // a backup lags a full window: the epoch goes on
		return nil
	}
	last := a.c.Status().Last
	applied := a.sm.AppliedSeq()
	if applied <= last && !a.fresh {
		return nil // an epoch without writes makes no checkpoint
	}
	delta, err := a.sm.TakeDelta()
	if err != nil {
		return err
	}
	if applied <= last {
		// A new primary's state may be ahead of some backup's without any
		// write of its own: an empty checkpoint one seq on makes the
		// backups confirm it (and lets the commit point cover it).
		applied++
		if _, err := a.sm.Apply(applied, delta, nil); err != nil {
			return err
		}
		a.exec = applied
	}
	if err := a.c.Checkpoint(applied, delta); err != nil {
		return fmt.Errorf("lockstep: checkpoint at %d refused after its delta was taken: %w", applied, err)
	}
	a.fresh = false
	a.stats.made.Add(1)
	a.stats.bytes.Add(uint64(len(delta)))
	a.stats.lastBytes.Store(uint64(len(delta)))
	return nil
}

// dirtyPastBound reports whether the open epoch should be cut early.
func (a *cpCore) dirtyPastBound() bool {
	return a.role == RolePrimary && a.sm.DirtyBytes() > a.max
}

func (a *cpCore) Step(payload []byte) error {
	m, err := checkpoint.DecodeMessage(payload)
	if err != nil {
		return err
	}
	return epochRefusal(a.c.Step(m), checkpoint.ErrStaleEpoch, m.Epoch, func() uint64 { return a.c.Status().Epoch })
}

// Applied is the runtime's report: at a backup, of installed checkpoints;
// at the primary, of its own executed writes, which the core does not see.
func (a *cpCore) Applied(seq uint64) {
	if a.role == RolePrimary {
		return
	}
	a.c.Installed(seq)
}

func (a *cpCore) AcceptsSnapshot(from string, _ uint64) bool { return a.c.AcceptsSnapshot(from) }
func (a *cpCore) Restored(from string, seq uint64)           { a.c.Restored(from, seq) }
func (a *cpCore) Hold(seq uint64)                            { a.c.Hold(seq) }
func (a *cpCore) Tick()                                      { a.c.Tick() }
func (a *cpCore) ReadReady() (bool, bool)                    { return a.c.ReadReady(), true }

// ServesSnapshot: only a primary that is ReadReady holds a state that is a
// point of the group's history (it has installed what it received before
// taking office).
func (a *cpCore) ServesSnapshot() bool { return a.c.ReadReady() }

// readGate is what a read of args waits for: only the speculative writes
// it could observe, so a read of committed state goes out at once (the
// other protocols gate every primary read on its applied seq).
func (a *cpCore) readGate(args [][]byte) uint64 { return a.sm.SpeculativeSeq(args) }

func (a *cpCore) Ready() effects {
	rd := a.c.Ready()
	if rd.Commit > 0 {
		a.sm.Committed(rd.Commit)
	}
	var apply []chain.Entry
	for _, cp := range rd.Install {
		apply = append(apply, chain.Entry{Seq: cp.Seq, Data: cp.Data})
	}
	return effects{apply: apply, commit: rd.Commit, needSnapshot: rd.NeedSnapshot, msgs: cpMsgs(rd.Messages)}
}

func (a *cpCore) Status() coreStatus {
	st := a.c.Status()
	s := coreStatus{
		Role: cpRole(st.Role), Epoch: st.Epoch, Applied: st.Applied, Last: st.Last, Commit: st.Commit,
		Pending: st.Held, CaughtUp: st.CaughtUp, Complete: st.Complete, ReadReady: st.ReadReady,
		readGated: true,
	}
	if s.Role == RolePrimary {
		s.Applied = max(s.Applied, a.exec)
	}
	for _, p := range st.Peers {
		s.Lag = max(s.Lag, uint64(p.Lag))
	}
	return s
}

func cpRole(r checkpoint.Role) Role {
	switch r {
	case checkpoint.RolePrimary:
		return RolePrimary
	case checkpoint.RoleBackup:
		return RoleBackup
	case checkpoint.RoleJoining:
		return RoleJoining
	}
	return RoleNone
}

type cpMsgs []checkpoint.Message

func (m cpMsgs) Len() int { return len(m) }

func (m cpMsgs) Encode(i int, b []byte) (string, []byte) {
	return m[i].To, checkpoint.AppendMessage(b, m[i])
}

// appendInfo appends the checkpoint lines of INFO replication.
func (a *cpCore) appendInfo(b []byte) []byte {
	return fmt.Appendf(b, "lockstep_checkpoint_interval_ms:%d\r\nlockstep_checkpoints:%d\r\nlockstep_checkpoint_bytes:%d\r\nlockstep_checkpoint_last_bytes:%d\r\nlockstep_checkpoint_deferred:%d\r\nlockstep_dirty_bytes:%d\r\n",
		a.interval.Milliseconds(), a.stats.made.Load(), a.stats.bytes.Load(), a.stats.lastBytes.Load(), a.stats.deferred.Load(), a.sm.DirtyBytes())
}
