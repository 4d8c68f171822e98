package nodesim

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/replica"
)

// A graceful stop (SIGTERM) runs as the server's does (cmd/lockstep:
// serve's Shutdown, then clusterNode.close): the node reads no new client
// command and lets those it has read finish; its run loop ends and the
// replica retires (BeginRetire, then TryRetire until the state is known
// to be all committed, or the wait runs out); if it is, the node writes a
// clean-stop record to its disk and makes it durable; it closes its
// registration, which revokes its lease, and exits. The restarted process
// keeps the state if coord.KeepClean says so (see restartLater), and
// rejoins on it as a joiner, catching up from the retained log of the
// tail or primary, or by snapshot. Checkpoint replicas cannot retire;
// there the stop is an ordinary graceful exit.

// Graceful-stop timing, in milliseconds.
const (
	drainWait  = 10_000 // how long clients' commands may take to finish (--shutdown-timeout)
	retireWait = 2_000  // how long the commit point may take to reach applied (cmd/lockstep's retireWait)
)

// errStopping is what a client sees of a server that stopped reading
// commands: its connection closes.
var errStopping = errors.New("nodesim: server shutting down")

// stopping is a node's graceful stop in progress.
type stopping struct {
	drainTill  int64 // the commands read may finish until then
	retiring   bool  // the run loop ended and BeginRetire was called
	retireTill int64 // when TryRetire is given up on
	recording  bool  // the clean-stop record is being written
}

// gracefulStop begins a graceful stop of n. Only a registered server
// process stops so: one still starting would simply fail to start.
func (w *World) gracefulStop(n *node) {
	if n == nil || n.stop != nil || !n.registered || w.isExtra(n) {
		return
	}
	n.stop = &stopping{drainTill: w.now + drainWait}
	w.stats.Inc("graceful stop")
	w.logf("%s (%s) stops gracefully, %d client commands in flight", n.name, n.inc, n.inFlight)
}

func (n *node) retiring() bool { return n.stop != nil && n.stop.retiring }

// drain is the stop's first phase, the server's Shutdown: the node runs
// on, but takes no new command (client.arrive refuses them), until the
// commands it has read have their replies, or the wait runs out. Then its
// run loop ends and the replica begins to retire.
func (n *node) drain() {
	w := n.w
	if n.inFlight > 0 && w.now < n.stop.drainTill {
		return
	}
	n.rep.BeginRetire(w.ctx)
	n.stop.retiring, n.stop.retireTill = true, w.now+retireWait
	st := n.rep.Status()
	w.logf("%s (%s) retires as %s at applied %d", n.name, n.inc, st.Role, st.Applied)
}

// retireStep is one step of a retiring process. Its run loop has ended:
// it ticks no more, installs no configuration and publishes no status;
// but its transport still delivers messages, so acks still move the
// commit point, and its session still renews the lease until it closes.
// It polls TryRetire as replica.Retire does.
func (n *node) retireStep() {
	w := n.w
	if n.reg.Err() == nil && w.now >= n.nextRenew {
		n.renew()
	}
	if n.stop.recording {
		return
	}
	seq, forced, err := n.rep.TryRetire()
	switch {
	case errors.Is(err, replica.ErrRetirePending) && w.now < n.stop.retireTill:
		return
	case err != nil:
		w.stats.Inc("graceful stop without a clean record")
		n.leave(fmt.Sprintf("no clean stop: %v", err))
		return
	}
	n.disk.writeClean(coord.Clean{Seq: seq, DataID: n.disk.id, Forced: forced})
	n.stop.recording = true
	w.logf("%s (%s) writes its clean-stop record at seq %d", n.name, n.inc, seq)
	w.after(1+w.rng.Int64N(3), n.recorded)
}

// recorded ends the record's write: now and then the machine loses power
// first, which must lose the record with everything else unsynced;
// otherwise the record is made durable (or its fsync fails, and the
// server leaves none) and the process leaves.
func (n *node) recorded() {
	w := n.w
	switch {
	case n.down:
		return // crashed meanwhile: the record was lost with the disk's unsynced writes
	case n.paused():
		w.agenda.Add(n.pauseTill, n.recorded)
		return
	case w.faulty && w.rng.IntN(10) == 0:
		w.stats.Inc("crash before the clean-stop record was durable")
		n.crash("power loss while writing the clean-stop record")
		return
	}
	if err := n.disk.syncClean(); err != nil {
		n.leave("the clean-stop record could not be written")
		return
	}
	w.stats.Inc("clean stop recorded")
	n.leave("stopped cleanly")
}

// leave ends a stopping process as the server's close does: it closes its
// registration, which revokes the lease so that the group reconfigures at
// once; if the coordinator cannot be reached, the watchdog, which was not
// stood down, fences the process two times in three (as at a crash), else
// the lease expires. The process then exits, and a supervisor starts it
// again. Its disk keeps even what it did not sync, as the page cache does
// for a process that exits; only a power loss (totalOutage) takes that.
func (n *node) leave(why string) {
	w := n.w
	revoked := n.reg.Close(w.ctx) == nil
	n.down = true
	n.inbox = nil
	w.stats.Inc("graceful exit")
	w.logf("%s (%s) exited: %s (lease revoked: %v)", n.name, n.inc, why, revoked)
	if !revoked && w.rng.IntN(3) > 0 {
		w.after(1+w.rng.Int64N(3), func() { w.coord.fence(n) })
	}
	w.restartLater(n, 200+w.rng.Int64N(1500))
}

// noteCleanJoin counts, once, how a process that kept a clean stop's
// state became a member: on that state, catching up from the tail's
// retained log, or by installing a snapshot, as the replica's INFO says.
func (n *node) noteCleanJoin() {
	if n.kept != keptClean || n.cleanJoined || n.rep.Status().State != "serving" {
		return
	}
	n.cleanJoined = true
	if snapshotsInstalled(n.rep) == 0 {
		n.w.stats.Inc("clean restart member from the log")
	} else {
		n.w.stats.Inc("clean restart member by snapshot")
	}
}

// snapshotsInstalled reads lockstep_snapshots_installed from the
// replica's INFO replication section.
func snapshotsInstalled(r *replica.Replica) int {
	const field = "lockstep_snapshots_installed:"
	info, _ := r.AppendInfo("replication", nil)
	for line := range strings.SplitSeq(string(info), "\r\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			if k, err := strconv.Atoi(v); err == nil {
				return k
			}
		}
	}
	panic("nodesim: INFO replication has no " + field) // the replica's own format
}
