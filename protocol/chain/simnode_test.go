package chain_test

import (
	"errors"

	"github.com/lockstep/lockstep/protocol/chain"
	"github.com/lockstep/lockstep/sim"
)

// checkNeed checks a request for a snapshot: only a replica that may lack
// committed entries (a joiner, or a promoted one not yet complete) asks.
func (w *world) checkNeed(n *simNode, src string) error {
	if st := n.Core.Detail(); st.Complete {
		return violation("%s, a complete %s, needs a snapshot from %s", n.Name, st.Role, src)
	}
	return nil
}

// checkCommit checks that only the head commits, and nothing it has not
// applied itself.
func (w *world) checkCommit(n *simNode, c uint64) error {
	st := n.Core.Detail()
	if st.Role != chain.RoleHead && st.Role != chain.RoleSingle {
		return violation("%s (%s) reports Commit %d", n.Name, st.Role, c)
	}
	if c > n.Applied {
		return violation("%s commits %d beyond its applied %d", n.Name, c, n.Applied)
	}
	return nil
}

// install installs a snapshot of the joiner's predecessor at its applied
// seq, if the joiner still accepts it.
func (w *world) install(j *simNode, _ string, snap *sim.KVSnapshot) error {
	if !j.Core.AcceptsSnapshot("", snap.Seq) {
		w.Trace.Logf("%s refuses the snapshot at %d", j.Name, snap.Seq)
		return nil
	}
	j.Restore(snap)
	j.KeptFrom = 0 // it did need a snapshot
	j.Core.Restored("", snap.Seq)
	if st := j.Core.Detail(); st.Applied != snap.Seq || st.Last != snap.Seq {
		return violation("%s restored %d but has applied %d, last %d", j.Name, snap.Seq, st.Applied, st.Last)
	}
	w.Stats.Snapshots++
	w.Trace.Logf("%s installs the snapshot at %d", j.Name, snap.Seq)
	return w.Drain(j)
}

// read answers a get at the master's tail at once, if it is ReadReady:
// a tail applies only entries every member holds, so they are committed.
func (w *world) read(c *simClient, key string) {
	m := w.Cfg.Members
	n := w.By[m[len(m)-1]]
	if !n.Alive || !n.Core.Detail().ReadReady {
		return
	}
	id := w.Hist.Invoke(c.ID, sim.KVInput{Op: sim.KVGet, Key: key})
	w.Hist.Return(id, sim.KVOutput{Value: n.KV[key]})
	w.Stats.Reads++
}

// checkPropose checks that the head refuses a write only when it must,
// and never lets more than Window entries go unacknowledged.
func (w *world) checkPropose(n *simNode, err error) (bool, error) {
	st := n.Core.Detail()
	switch {
	case errors.Is(err, chain.ErrWindowFull):
		w.Stats.WindowFull++
		if st.Role == chain.RoleHead && st.Pending < w.p.opts.Window {
			return false, violation("%s: window full with %d entries unacknowledged", n.Name, st.Pending)
		}
		return false, nil
	case errors.Is(err, chain.ErrNotHead):
		return false, nil
	case err != nil:
		return false, violation("%s: Propose: %v", n.Name, err)
	}
	if st.Last-st.Commit > uint64(w.p.opts.Window) || (st.Role == chain.RoleHead && st.Pending > w.p.opts.Window) {
		return false, violation("%s: Propose beyond the window: last %d commit %d, %d entries unacknowledged", n.Name, st.Last, st.Commit, st.Pending)
	}
	return true, nil
}

// master removes one noticed crash (the head's too: its successor leads),
// or promotes a caught-up joiner, or adds a restarted node as joiner: one
// change per step.
func (w *world) master() error {
	j := w.By[w.Cfg.Joining]
	if w.Reconfigure(w.caughtUp, "promote %s") == sim.Promoted {
		w.stats.promotions++
		if j.KeptFrom > 0 {
			w.stats.logJoins++
		}
	}
	return nil
}

// caughtUp reports whether the joiner may become the tail, by its status
// now.
func (w *world) caughtUp(j *simNode) bool {
	st := j.Core.Detail()
	return st.Epoch == w.Cfg.Epoch && st.Role == chain.RoleJoining && st.CaughtUp
}
