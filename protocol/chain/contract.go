package chain

import (
	"fmt"

	"github.com/lockstep/lockstep/protocol"
)

// Core implements the contract natively; the typed calls (StepMessage,
// TypedReady, Detail) are the same core seen with the chain's own message
// and status types, for its tests and simulator.
var _ protocol.Core = (*Core)(nil)

// Step decodes a message from a neighbour and steps it (see StepMessage).
func (c *Core) Step(payload []byte) error {
	m, err := DecodeMessage(payload)
	if err != nil {
		return err
	}
	return c.StepMessage(m)
}

// CloseEpoch refuses: a chain ships entries, not epochs of state.
func (c *Core) CloseEpoch(uint64, []byte) error {
	return fmt.Errorf("%w: chain", protocol.ErrNoEpochs)
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

// Status summarizes the replica for the runtime. A tail holds only
// committed entries, so its reads need no gate, and any replica may serve
// a snapshot: the core decides whom a replica asks.
func (c *Core) Status() protocol.Status {
	s := protocol.Status{
		Role:           c.role.contract(),
		Epoch:          c.cfg.Epoch,
		Applied:        c.applied,
		Last:           c.log.Last(),
		Commit:         c.commit,
		Pending:        int(c.log.Last() - c.released),
		Retained:       c.log.Len(),
		RetainedBytes:  c.log.Bytes(),
		Oldest:         c.log.Base,
		CaughtUp:       c.caughtUp(),
		Complete:       c.complete(),
		ReadReady:      c.ReadReady(),
		ReadGate:       protocol.GateNone,
		ServesSnapshot: true,
	}
	return s
}

// contract is the role in the contract's terms.
func (r Role) contract() protocol.Role {
	switch r {
	case RoleHead:
		return protocol.RoleHead
	case RoleMiddle:
		return protocol.RoleMiddle
	case RoleTail:
		return protocol.RoleTail
	case RoleSingle:
		return protocol.RoleSingle
	case RoleJoining:
		return protocol.RoleJoining
	}
	return protocol.RoleNone
}
