package checkpoint

import (
	"fmt"
	"time"

	"github.com/lockstep/lockstep/protocol"
)

// Core implements the contract natively; the typed calls (StepMessage,
// TypedReady, Detail, Checkpoint) are the same core seen with checkpoint
// replication's own types, for its tests and simulator.
var _ protocol.Core = (*Core)(nil)

// epochs is the primary's open epoch: the writes its runtime executed
// since the last checkpoint, which the core does not see one by one (only
// Propose numbers them), and when the epoch is due to close.
type epochs struct {
	exec  uint64        // the last store seq executed (numbered by Propose, or reported by Applied)
	fresh bool          // no checkpoint made since taking office: one is owed, empty if need be
	next  time.Duration // on Options.Clock: the epoch's time is up at next
	dirty int           // Options.DirtyBytes as last read (by Propose or Ready), for Status
	stats epochCounters // for Status.Epochs
}

// epochCounters count the checkpoints this replica made as primary.
type epochCounters struct {
	made, bytes, lastBytes, deferred uint64
}

// reset follows a change of role: a new primary starts executing from the
// state it holds (at applied), which its first checkpoint must confirm.
func (e *epochs) reset(primary bool, applied uint64) {
	e.exec, e.fresh, e.dirty = applied, primary, 0
}

// Propose numbers a write at the primary; its runtime executes it at once
// on its store (the state machine records what it dirtied), and the
// write reaches the backups in the checkpoint that closes the epoch. While
// the window is full and the open epoch has grown past its bound, writes
// wait (ErrWindowFull).
func (c *Core) Propose([]byte) (uint64, error) {
	if !c.ReadReady() {
		return 0, fmt.Errorf("%w: %s is not a primary ready to execute writes (%s in epoch %d)", ErrNotPrimary, c.opts.ID, c.view.Role, c.view.Epoch)
	}
	if c.dirtyPastBound() && !c.CanCheckpoint() {
		return 0, ErrWindowFull
	}
	c.ep.exec = max(c.ep.exec, c.applied) + 1
	return c.ep.exec, nil
}

// dirtyPastBound reports whether the open epoch's dirty state has passed
// Options.MaxDirty (never without Options.DirtyBytes). It keeps what it
// read for Status, which the read path calls and which therefore does not
// ask the state machine itself; the runtime calls Ready at least every
// tick, so the figure is never older than that.
func (c *Core) dirtyPastBound() bool {
	if c.opts.DirtyBytes == nil {
		return false
	}
	c.ep.dirty = c.opts.DirtyBytes()
	return c.ep.dirty > c.opts.MaxDirty
}

// epochDue reports whether the primary should close its epoch now: its
// time is up on Options.Clock, or its dirty state passed its bound, and it
// has something to checkpoint (writes, or a new primary's state no
// checkpoint confirmed yet) and room in the window. Only with take does it
// move the epoch's clock on, and count a close put off by a full window
// when the epoch's time is up.
func (c *Core) epochDue(take bool) bool {
	if !c.ReadReady() {
		return false
	}
	timeUp := false
	if c.opts.Clock != nil {
		now := c.opts.Clock()
		timeUp = now >= c.ep.next
		if timeUp && take {
			// The next close is a whole number of Intervals on from the
			// last, not one from now, so that epochs keep the beat of the
			// runtime's ticker, which was started after the core.
			step := c.opts.Interval
			c.ep.next += (now-c.ep.next)/step*step + step
		}
	}
	if past := c.dirtyPastBound(); !timeUp && !past {
		return false
	}
	if !c.CanCheckpoint() {
		if take && timeUp {
			c.ep.stats.deferred++ // a backup lags a full window: the epoch goes on
		}
		return false
	}
	return c.ep.exec > c.last || c.ep.fresh
}

// CloseEpoch makes the open epoch a checkpoint, after Ready.TakeDelta:
// delta is what the state machine changed up to seq, the last store seq
// executed. A new primary whose epoch had no writes makes an empty
// checkpoint one seq on (seq+1), so that its backups confirm its state
// and the commit point can cover it; that one is also in the next
// Ready's Apply, for the runtime to apply over its own state before it
// executes another write. An error means the delta is lost.
func (c *Core) CloseEpoch(seq uint64, delta []byte) error {
	empty := seq <= c.last && c.ep.fresh
	if empty {
		seq++
	}
	if err := c.Checkpoint(seq, delta); err != nil {
		return fmt.Errorf("lockstep: checkpoint at %d refused after its delta was taken: %w", seq, err)
	}
	if empty {
		c.ready.Install = append(c.ready.Install, Checkpoint{Seq: seq, Data: delta})
	}
	c.ep.exec = max(c.ep.exec, seq)
	c.ep.fresh, c.ep.dirty = false, 0
	c.ep.stats.made++
	c.ep.stats.bytes += uint64(len(delta))
	c.ep.stats.lastBytes = uint64(len(delta))
	return nil
}

// Step decodes a message from a peer and steps it (see StepMessage).
func (c *Core) Step(payload []byte) error {
	m, err := DecodeMessage(payload)
	if err != nil {
		return err
	}
	return c.StepMessage(m)
}

// Ready takes the effects accumulated since the last call, with the
// messages left for the runtime to encode, and asks for the epoch to be
// closed when it is due.
func (c *Core) Ready() protocol.Ready {
	take := c.epochDue(true)
	rd := c.TypedReady()
	out := protocol.Ready{Apply: rd.Install, Commit: rd.Commit, NeedSnapshot: rd.NeedSnapshot, TakeDelta: take}
	if len(rd.Messages) > 0 {
		out.Messages = outbox(rd.Messages)
	}
	return out
}

// outbox is a Ready's messages as the contract hands them out.
type outbox []Message

func (o outbox) Len() int { return len(o) }

func (o outbox) Encode(i int, b []byte) (string, []byte) {
	return o[i].To, AppendMessage(b, o[i])
}

// Status summarizes the replica for the runtime, without the peer table
// (so it does not allocate). The primary executes ahead of replication
// (Speculative), so a read waits only for the speculative writes it could
// observe; and only a ReadReady primary holds a state that is a point of
// the group's history, which it may serve as a snapshot.
func (c *Core) Status() protocol.Status {
	s := protocol.Status{
		Role:        contractRole(c.view.Role),
		Epoch:       c.view.Epoch,
		Applied:     c.applied,
		Last:        c.last,
		Pending:     len(c.held),
		Complete:    c.complete(),
		ReadReady:   c.ReadReady(),
		ReadGate:    protocol.GateSpeculative,
		Speculative: c.view.Role == RolePrimary,
		Epochs: protocol.EpochStatus{
			Interval: c.opts.Interval, Made: c.ep.stats.made, Bytes: c.ep.stats.bytes,
			LastBytes: c.ep.stats.lastBytes, Deferred: c.ep.stats.deferred, DirtyBytes: c.ep.dirty,
		},
	}
	s.ServesSnapshot = s.ReadReady
	switch c.view.Role {
	case RolePrimary:
		s.Applied = max(s.Applied, c.ep.exec)
		s.Commit, s.CaughtUp = c.commit, true
		for i := range c.peers {
			s.Lag = max(s.Lag, uint64(c.lag(&c.peers[i])))
		}
	case RoleBackup, RoleJoining:
		s.CaughtUp = c.up.Synced() && c.applied >= c.up.PrimaryLast
	}
	return s
}

// contractRole is a checkpoint role in the contract's terms.
func contractRole(r Role) protocol.Role {
	switch r {
	case RolePrimary:
		return protocol.RolePrimary
	case RoleBackup:
		return protocol.RoleBackup
	case RoleJoining:
		return protocol.RoleJoining
	}
	return protocol.RoleNone
}
