package replica

import (
	"errors"

	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/protocol/pb"
)

// pbCore adapts pb.Core to protocolCore.
type pbCore struct{ c *pb.Core }

func newPBCore(id string, opts CoreOptions, applied uint64) *pbCore {
	return &pbCore{c: pb.New(pb.Options{ID: id, Window: opts.Window, MaxBatch: opts.MaxBatch}, applied)}
}

func (a *pbCore) Protocol() string { return ProtocolPrimaryBackup }

func (a *pbCore) SetConfig(cfg coord.Config, name, incarnation string) bool {
	members, joining, member := memberIDs(cfg, name, incarnation)
	a.c.SetConfig(pb.Config{Epoch: cfg.Epoch, Members: members, Joining: joining})
	return member
}

func (a *pbCore) Propose(data []byte) (uint64, error) {
	seq, err := a.c.Propose(data)
	if errors.Is(err, pb.ErrWindowFull) {
		return 0, errWindowFull
	}
	return seq, err
}

func (a *pbCore) Step(payload []byte) error {
	m, err := pb.DecodeMessage(payload)
	if err != nil {
		return err
	}
	return epochRefusal(a.c.Step(m), pb.ErrStaleEpoch, m.Epoch, func() uint64 { return a.c.Status().Epoch })
}

func (a *pbCore) Applied(seq uint64)                         { a.c.Applied(seq) }
func (a *pbCore) AcceptsSnapshot(from string, _ uint64) bool { return a.c.AcceptsSnapshot(from) }
func (a *pbCore) Restored(from string, seq uint64)           { a.c.Restored(from, seq) }
func (a *pbCore) Hold(seq uint64)                            { a.c.Hold(seq) }
func (a *pbCore) Tick()                                      { a.c.Tick() }
func (a *pbCore) ReadReady() (bool, bool)                    { return a.c.ReadReady(), true }

// ServesSnapshot: the core decides who is asked; any replica may answer.
func (a *pbCore) ServesSnapshot() bool { return true }

func (a *pbCore) Ready() effects {
	rd := a.c.Ready()
	return effects{apply: rd.Apply, commit: rd.Commit, needSnapshot: rd.NeedSnapshot, msgs: pbMsgs(rd.Messages)}
}

func (a *pbCore) Status() coreStatus {
	st := a.c.Status()
	s := coreStatus{
		Role: pbRole(st.Role), Epoch: st.Epoch, Applied: st.Applied, Last: st.Last, Commit: st.Commit,
		Pending: st.Pending, CaughtUp: st.CaughtUp, Complete: st.Complete, ReadReady: st.ReadReady,
		readGated: true,
	}
	for _, p := range st.Peers {
		s.Lag = max(s.Lag, p.Lag)
	}
	return s
}

func pbRole(r pb.Role) Role {
	switch r {
	case pb.RolePrimary:
		return RolePrimary
	case pb.RoleBackup:
		return RoleBackup
	case pb.RoleJoining:
		return RoleJoining
	}
	return RoleNone
}

type pbMsgs []pb.Message

func (m pbMsgs) Len() int { return len(m) }

func (m pbMsgs) Encode(i int, b []byte) (string, []byte) {
	return m[i].To, pb.AppendMessage(b, m[i])
}
