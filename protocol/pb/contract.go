package pb

import (
	"fmt"

	"github.com/lockstep/lockstep/protocol"
)

// Core implements the contract natively; the typed calls (StepMessage,
// TypedReady, Detail) are the same core seen with primary-backup's own
// message and status types, for its tests and simulator.
var _ protocol.Core = (*Core)(nil)

// Step decodes a message from a peer and steps it (see StepMessage).
func (c *Core) Step(payload []byte) error {
	m, err := DecodeMessage(payload)
	if err != nil {
		return err
	}
	return c.StepMessage(m)
}

// CloseEpoch refuses: primary-backup ships entries, not epochs of state.
func (c *Core) CloseEpoch(uint64, []byte) error {
	return fmt.Errorf("%w: primary-backup", protocol.ErrNoEpochs)
}

// Ready takes the effects accumulated since the last call, with the
// messages left for the runtime to encode.
func (c *Core) Ready() protocol.Ready {
	rd := c.TypedReady()
	out := protocol.Ready{Apply: rd.Apply, Commit: rd.Commit, NeedSnapshot: rd.NeedSnapshot}
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
// (so it does not allocate): a primary's applied entries may not be
// committed yet, so its reads wait for the commit point to reach the
// applied seq they saw; any replica may serve a snapshot, since the core
// decides whom a replica asks.
func (c *Core) Status() protocol.Status {
	s := protocol.Status{
		Role:           contractRole(c.view.Role),
		Epoch:          c.view.Epoch,
		Applied:        c.applied,
		Last:           c.log.Last(),
		Commit:         c.known,
		Pending:        int(c.log.Last() - c.released),
		Retained:       c.log.Len(),
		RetainedBytes:  c.log.Bytes(),
		Oldest:         c.log.Base,
		Complete:       c.complete(),
		ReadReady:      c.ReadReady(),
		ReadGate:       protocol.GateApplied,
		ServesSnapshot: true,
	}
	switch c.view.Role {
	case RolePrimary:
		s.Commit, s.CaughtUp = c.commit, true
		for i := range c.peers {
			s.Lag = max(s.Lag, c.lag(&c.peers[i]))
		}
	case RoleBackup, RoleJoining:
		s.CaughtUp = c.up.Synced() && c.applied >= c.up.PrimaryLast
	}
	return s
}

// contractRole is a primary-backup role in the contract's terms.
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
