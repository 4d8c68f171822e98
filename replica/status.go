package replica

import (
	"errors"
	"fmt"

	"github.com/lockstep/lockstep/protocol"
	"github.com/lockstep/lockstep/storage"
	"github.com/lockstep/lockstep/transport"
)

// Status is what the replica reports to the coordinator and INFO.
type Status struct {
	Protocol string // chain, primary-backup or checkpoint
	Role     string // head, middle, tail, single, primary, backup, joining, none
	State    string // serving, joining, caughtup, idle
	Epoch    uint64
	Applied  uint64
	Commit   uint64
	Pending  int
	// Retained, RetainedBytes and Oldest describe the log kept for peers
	// and for members that rejoin on a kept state (see protocol.Status).
	Retained      int
	RetainedBytes int
	Oldest        uint64
	CaughtUp      bool
	// Complete: a member holding every entry that may have been
	// acknowledged; only a complete backup may become primary.
	Complete bool
	// Lag, at a primary, is how many entries the slowest backup or joiner
	// is behind; writes wait once it reaches the window.
	Lag uint64
	// Epochs describes the epochs of a protocol that replicates in them
	// (checkpoint); zero (Interval 0) for the others.
	Epochs protocol.EpochStatus
}

// Status reads the core's view.
func (r *Replica) Status() Status {
	r.mu.RLock()
	st := r.core.Status()
	r.mu.RUnlock()
	s := Status{
		Protocol: r.proto, Role: st.Role.String(), Epoch: st.Epoch, Applied: st.Applied,
		Commit: r.commit.seq.Load(), Pending: st.Pending, CaughtUp: st.CaughtUp,
		Complete: st.Complete, Lag: st.Lag, Epochs: st.Epochs,
		Retained: st.Retained, RetainedBytes: st.RetainedBytes, Oldest: st.Oldest,
	}
	switch {
	case st.Role == RoleJoining && st.CaughtUp:
		s.State = "caughtup"
	case st.Role == RoleJoining:
		s.State = "joining"
	case st.Role == RoleNone:
		s.State = "idle"
	default:
		s.State = "serving"
	}
	return s
}

// errNotReady wraps every reason Ready gives.
var errNotReady = errors.New("lockstep: not serving")

// Ready reports nil while the replica serves clients (for /readyz): it
// has not failed or begun to stop, its lease is valid, and it is a member
// of the current configuration that holds every acknowledged write. A
// joiner, a member still catching up to its barrier, or a node cut off
// from the coordinator is alive (/healthz) but not ready.
func (r *Replica) Ready() error {
	if err := r.Err(); err != nil {
		return err
	}
	if r.retiring.Load() {
		return fmt.Errorf("%w: stopping", errNotReady)
	}
	if !r.leaseValid() {
		return fmt.Errorf("%w: coordinator lease not valid", errNotReady)
	}
	st := r.Status()
	switch {
	case st.State != "serving":
		return fmt.Errorf("%w: %s (role %s, epoch %d)", errNotReady, st.State, st.Role, st.Epoch)
	case !st.Complete:
		return fmt.Errorf("%w: %s still catching up with what the group committed", errNotReady, st.Role)
	}
	return nil
}

// AppendInfo appends the INFO sections the replica owns.
func (r *Replica) AppendInfo(section string, b []byte) ([]byte, bool) {
	switch section {
	case "replication":
		st := r.Status()
		redisRole := "slave"
		if r.Role().Orders() {
			redisRole = "master"
		}
		b = fmt.Appendf(b, "role:%s\r\nlockstep_protocol:%s\r\nlockstep_role:%s\r\nlockstep_state:%s\r\nlockstep_epoch:%d\r\nlockstep_applied_seq:%d\r\nlockstep_commit_seq:%d\r\nlockstep_unacked:%d\r\nlockstep_complete:%d\r\nlockstep_backup_lag:%d\r\nlockstep_forwarded:%d\r\nlockstep_snapshots_served:%d\r\nlockstep_snapshots_installed:%d\r\nlockstep_snapshot_bytes_installed:%d\r\n",
			redisRole, st.Protocol, st.Role, st.State, st.Epoch, st.Applied, st.Commit, st.Pending, boolInt(st.Complete), st.Lag, r.stats.forwarded.Load(), r.stats.snapshots.Load(),
			r.stats.installed.Load(), r.stats.installedBytes.Load())
		b = r.appendRedisReplication(b, st)
		b = fmt.Appendf(b, "lockstep_log_retained:%d\r\nlockstep_log_retained_bytes:%d\r\nlockstep_log_oldest_seq:%d\r\n",
			st.Retained, st.RetainedBytes, st.Oldest)
		if e := st.Epochs; e.Interval > 0 {
			b = fmt.Appendf(b, "lockstep_checkpoint_interval_ms:%d\r\nlockstep_checkpoints:%d\r\nlockstep_checkpoint_bytes:%d\r\nlockstep_checkpoint_last_bytes:%d\r\nlockstep_checkpoint_deferred:%d\r\nlockstep_dirty_bytes:%d\r\n",
				e.Interval.Milliseconds(), e.Made, e.Bytes, e.LastBytes, e.Deferred, e.DirtyBytes)
		}
		if ts, ok := r.send.(interface{ Stats() transport.Stats }); ok {
			t := ts.Stats()
			b = fmt.Appendf(b, "lockstep_peer_msgs_sent:%d\r\nlockstep_peer_bytes_sent:%d\r\nlockstep_peer_writes:%d\r\nlockstep_peer_msgs_received:%d\r\nlockstep_peer_msgs_dropped:%d\r\nlockstep_peer_msgs_fault_dropped:%d\r\n",
				t.MsgsSent, t.BytesSent, t.Writes, t.MsgsReceived, t.MsgsDropped, t.MsgsFaultDropped)
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

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
