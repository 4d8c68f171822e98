package replica

import (
	"errors"

	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/protocol/chain"
)

// chainCore adapts chain.Core to protocolCore.
type chainCore struct{ c *chain.Core }

func newChainCore(id string, opts CoreOptions, applied uint64) *chainCore {
	return &chainCore{c: chain.New(chain.Options{ID: id, Window: opts.Window, MaxBatch: opts.MaxBatch}, applied)}
}

func (a *chainCore) Protocol() string { return ProtocolChain }

func (a *chainCore) SetConfig(cfg coord.Config, name, incarnation string) bool {
	members, joining, member := memberIDs(cfg, name, incarnation)
	a.c.SetConfig(chain.Config{Epoch: cfg.Epoch, Members: members, Joining: joining})
	return member
}

func (a *chainCore) Propose(data []byte) (uint64, error) {
	seq, err := a.c.Propose(data)
	if errors.Is(err, chain.ErrWindowFull) {
		return 0, errWindowFull
	}
	return seq, err
}

func (a *chainCore) Step(payload []byte) error {
	m, err := chain.DecodeMessage(payload)
	if err != nil {
		return err
	}
	return epochRefusal(a.c.Step(m), chain.ErrStaleEpoch, m.Epoch, func() uint64 { return a.c.Status().Epoch })
}

func (a *chainCore) Applied(seq uint64)                        { a.c.Applied(seq) }
func (a *chainCore) AcceptsSnapshot(_ string, seq uint64) bool { return a.c.AcceptsSnapshot(seq) }
func (a *chainCore) Restored(_ string, seq uint64)             { a.c.Restored(seq) }
func (a *chainCore) Hold(seq uint64)                           { a.c.Hold(seq) }
func (a *chainCore) Tick()                                     { a.c.Tick() }
func (a *chainCore) ReadReady() (bool, bool)                   { return a.c.ReadReady(), false }

// ServesSnapshot: the core decides who is asked; any replica may answer.
func (a *chainCore) ServesSnapshot() bool { return true }

func (a *chainCore) Ready() effects {
	rd := a.c.Ready()
	return effects{apply: rd.Apply, commit: rd.Commit, needSnapshot: rd.NeedSnapshot, msgs: chainMsgs(rd.Messages)}
}

func (a *chainCore) Status() coreStatus {
	st := a.c.Status()
	return coreStatus{
		Role: chainRole(st.Role), Epoch: st.Epoch, Applied: st.Applied, Last: st.Last, Commit: st.Commit,
		Pending: st.Pending, CaughtUp: st.CaughtUp, Complete: st.Complete, ReadReady: st.ReadReady,
	}
}

func chainRole(r chain.Role) Role {
	switch r {
	case chain.RoleHead:
		return RoleHead
	case chain.RoleMiddle:
		return RoleMiddle
	case chain.RoleTail:
		return RoleTail
	case chain.RoleSingle:
		return RoleSingle
	case chain.RoleJoining:
		return RoleJoining
	}
	return RoleNone
}

type chainMsgs []chain.Message

func (m chainMsgs) Len() int { return len(m) }

func (m chainMsgs) Encode(i int, b []byte) (string, []byte) {
	return m[i].To, chain.AppendMessage(b, m[i])
}
