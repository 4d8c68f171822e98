package pb_test

import (
	"fmt"

	"github.com/lockstep/lockstep/protocol/pb"
	"github.com/lockstep/lockstep/sim"
)

// master makes at most one change per step: promote a backup when it
// notices the primary crashed, or else what sim.World.Reconfigure does:
// remove a crashed backup or joiner, or make a caught-up joiner a
// backup, or add a restarted node as joiner.
func (w *world) master() error {
	for _, n := range w.Nodes {
		if n.Alive && (w.Step+int64(n.Index))%w.p.report == 0 {
			w.reports[n.Index] = n.Core.Detail()
		}
	}
	if p := w.By[w.Cfg.Members[0]]; !p.Alive || p.Suspected {
		if w.Failed(p) {
			w.failover()
		}
		return nil
	}
	j := w.By[w.Cfg.Joining]
	if w.Reconfigure(w.caughtUp, "make %s a backup") == sim.Promoted {
		w.stats.joins++
		if j.KeptFrom > 0 {
			w.stats.logJoins++
		}
	}
	return nil
}

// caughtUp reports whether the joiner may become a backup, by its last
// report.
func (w *world) caughtUp(j *simNode) bool {
	st := w.reports[j.Index]
	return st.Epoch == w.Cfg.Epoch && st.Role == pb.RoleJoining && st.CaughtUp
}

// failover promotes the live complete backup with the highest applied seq
// (then last seq) as last reported, dropping the crashed primary; it waits
// if there is none.
func (w *world) failover() {
	cfg := w.Cfg
	var best *simNode
	var bs pb.Status
	for _, name := range cfg.Members[1:] {
		n := w.By[name]
		if !n.Alive || n.Suspected {
			continue
		}
		st := w.reports[n.Index]
		if st.Complete && (best == nil || st.Applied > bs.Applied || (st.Applied == bs.Applied && st.Last > bs.Last)) {
			best, bs = n, st
		}
	}
	if best == nil {
		return
	}
	next := sim.Config{Members: []string{best.Name}, Joining: cfg.Joining}
	last := best.Core.Detail().Last
	for _, name := range cfg.Members[1:] {
		if name == best.Name {
			continue
		}
		next.Members = append(next.Members, name)
		if n := w.By[name]; n.Alive {
			switch st := n.Core.Detail(); {
			case st.Last < last:
				w.stats.behind++
			case st.Last > last:
				w.stats.ahead++
			}
		}
	}
	w.stats.failovers++
	w.Publish(next, fmt.Sprintf("promote %s (applied %d, last %d)", best.Name, bs.Applied, bs.Last))
}
