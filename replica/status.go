package replica

import (
	"fmt"

	"github.com/lockstep/lockstep/protocol/chain"
	"github.com/lockstep/lockstep/storage"
	"github.com/lockstep/lockstep/transport"
)

// Status is what the replica reports to the coordinator and INFO.
type Status struct {
	Role     string // head, middle, tail, single, joining, none
	State    string // serving, joining, caughtup, idle
	Epoch    uint64
	Applied  uint64
	Commit   uint64
	Pending  int
	CaughtUp bool
}

// Status reads the core's view.
func (r *Replica) Status() Status {
	r.mu.RLock()
	st := r.core.Status()
	r.mu.RUnlock()
	s := Status{
		Role: roleName(st.Role), Epoch: st.Epoch, Applied: st.Applied,
		Commit: r.commit.seq.Load(), Pending: st.Pending, CaughtUp: st.CaughtUp,
	}
	switch {
	case st.Role == chain.RoleJoining && st.CaughtUp:
		s.State = "caughtup"
	case st.Role == chain.RoleJoining:
		s.State = "joining"
	case st.Role == chain.RoleNone:
		s.State = "idle"
	default:
		s.State = "serving"
	}
	return s
}

// AppendInfo appends the INFO sections the replica owns.
func (r *Replica) AppendInfo(section string, b []byte) ([]byte, bool) {
	switch section {
	case "replication":
		st := r.Status()
		redisRole := "slave"
		if st.Role == "head" || st.Role == "single" {
			redisRole = "master"
		}
		b = fmt.Appendf(b, "role:%s\r\nlockstep_protocol:chain\r\nlockstep_role:%s\r\nlockstep_state:%s\r\nlockstep_epoch:%d\r\nlockstep_applied_seq:%d\r\nlockstep_commit_seq:%d\r\nlockstep_unacked:%d\r\nlockstep_forwarded:%d\r\nlockstep_snapshots_served:%d\r\n",
			redisRole, st.Role, st.State, st.Epoch, st.Applied, st.Commit, st.Pending, r.stats.forwarded.Load(), r.stats.snapshots.Load())
		if ts, ok := r.send.(interface{ Stats() transport.Stats }); ok {
			t := ts.Stats()
			b = fmt.Appendf(b, "lockstep_peer_msgs_sent:%d\r\nlockstep_peer_writes:%d\r\nlockstep_peer_msgs_received:%d\r\nlockstep_peer_msgs_dropped:%d\r\n",
				t.MsgsSent, t.Writes, t.MsgsReceived, t.MsgsDropped)
		}
	case "keyspace":
		b = storage.AppendKeyspaceInfo(b, r.store)
	case "persistence":
		b = storage.AppendPersistenceInfo(b, r.store)
	default:
		return b, false
	}
	return b, true
}
