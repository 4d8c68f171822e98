package nodesim

import (
	"slices"

	"github.com/lockstep/lockstep/coord"
)

// Faults strike at random while World.faulty is set. Each kind has its
// own chance per step, scaled by Params.Faults; durations are drawn per
// fault. A crash never takes the last live complete member of the
// group's configuration, since lockstep's replicas restart empty and the
// group would rightly stay down (coord.Plan never re-forms a group from
// empty nodes).

// injectFaults draws this step's faults. A fault that takes a node out
// strikes only a node whose loss leaves the group a healthy complete
// member (see victim).
func (w *World) injectFaults() {
	p := w.p.Faults
	chance := func(perSecond float64) bool { return w.rng.Float64() < p*perSecond/1000 }
	switch {
	case chance(0.4):
		if n := w.victim(); n != nil {
			n.crash("killed")
		}
	case chance(0.3):
		if n := w.victim(); n != nil {
			d := 50 + w.rng.Int64N(3000)
			n.pauseTill = w.now + d
			w.stats.Inc("pause")
			w.logf("%s paused for %d ms", n.name, d)
		}
	case chance(0.4):
		w.gracefulStop(w.victim())
	case chance(0.3):
		w.cut(w.victim(), true, false, "from its peers")
	case chance(0.3):
		w.cut(w.victim(), false, true, "from the coordinator")
	case chance(0.8):
		// Most often the node that answers reads: deposed while cut off,
		// it must stop answering before the group moves on without it.
		n := w.victim()
		if r := w.reader(); r != nil && w.rng.IntN(3) > 0 {
			n = w.victimIf(r)
		}
		w.cut(n, true, true, "from peers and coordinator")
	case chance(0.1):
		w.coord.outage(100 + w.rng.Int64N(4000))
	case chance(0.08):
		w.totalOutage()
	case chance(0.2):
		// An operator starts a second process under a running node's
		// name: it must wait for the name, never take it from a process
		// that may be serving.
		if n := w.anyUp(); n != nil {
			x := w.startNode(n.name, newDisk(w, n.name), keptNothing)
			w.extras = append(w.extras, x)
			w.stats.Inc("second process under a name")
			w.logf("a second process %s starts under the name of %s (%s)", x.inc, n.name, n.inc)
		}
	case chance(0.5):
		// A slow node: a joiner lags, a backup falls behind its window.
		if n := w.anyUp(); n != nil {
			n.slow, n.slowTill = 20+w.rng.Int64N(300), w.now+500+w.rng.Int64N(3000)
			w.stats.Inc("slow node")
			w.logf("%s slow by %d ms until %d", n.name, n.slow, n.slowTill)
		}
	case chance(1):
		a, b := w.anyUp(), w.anyUp()
		if a != nil && b != nil && a != b {
			w.stats.Add("msg reset", w.net.Reset(a.name, b.name))
		}
	}
}

// cut isolates n from its peers, the coordinator, or both, for a while;
// clients still reach it.
func (w *World) cut(n *node, peers, coordinator bool, what string) {
	if n == nil {
		return
	}
	d := 100 + w.rng.Int64N(4000)
	n.peerCut = n.peerCut || peers
	n.coordCut = n.coordCut || coordinator
	// A partition splits the clients too. The reader (client 0) stays on
	// the node's side, each writer is cut off from it three times in four,
	// and every writer half the time: a node deposed while cut off is then
	// asked only by a client that cannot see the new one, and nothing it
	// is asked to write stalls that client's reads.
	var away []*client
	clean := w.rng.IntN(2) == 0
	for _, c := range w.clients {
		if c.id != 0 && (clean || w.rng.IntN(4) > 0) && !c.cutFrom[n.name] {
			away = append(away, c)
			c.cutFrom[n.name] = true
		}
	}
	if peers {
		for _, o := range w.nodes {
			w.net.Reset(n.name, o.name)
		}
	}
	w.stats.Inc("cut " + what)
	w.logf("%s cut off %s for %d ms", n.name, what, d)
	w.after(d, func() {
		n.peerCut = n.peerCut && !peers
		n.coordCut = n.coordCut && !coordinator
		for _, c := range away {
			delete(c.cutFrom, n.name)
		}
		w.logf("%s reconnected", n.name)
	})
}

// anyUp is a random node that has not crashed, or nil.
func (w *World) anyUp() *node {
	var up []*node
	for _, n := range w.nodes {
		if !n.down {
			up = append(up, n)
		}
	}
	if len(up) == 0 {
		return nil
	}
	return up[w.rng.IntN(len(up))]
}

// victim picks a node to take out, or nil if taking it out could leave
// the configuration without a healthy complete member: one that runs, is
// not paused or cut off, and holds every acknowledged write. Without one
// the group would rightly stay down, since lockstep's replicas restart
// empty (a member cut off from the coordinator loses its lease and
// restarts too).
func (w *World) victim() *node { return w.victimIf(w.anyUp()) }

// reader is the node the configuration says answers reads, if it runs.
func (w *World) reader() *node {
	cfg := w.coord.cfg
	if cfg == nil || len(cfg.Members) == 0 {
		return nil
	}
	m := cfg.Members[0]
	if cfg.Protocol == coord.ProtocolChain {
		m = cfg.Members[len(cfg.Members)-1]
	}
	if n := w.byName(m.Name); n != nil && !n.down && n.inc == m.Incarnation {
		return n
	}
	return nil
}

// victimIf returns n if taking it out leaves the configuration a healthy
// complete member, else nil.
//
// Now and then it returns n all the same: the group may then be lost for
// good, which the correct code must survive safely (it stays down), and
// which a planner that promotes an incomplete backup does not.
func (w *World) victimIf(n *node) *node {
	cfg := w.coord.cfg
	if cfg == nil || n == nil {
		return nil
	}
	if w.rng.IntN(8) == 0 {
		w.stats.Inc("unguarded fault")
		return n
	}
	for _, m := range cfg.Members {
		o := w.byName(m.Name)
		if o != nil && o != n && o.healthy() && o.inc == m.Incarnation && o.rep.Status().Complete {
			return n
		}
	}
	return nil
}

// healthy: n runs and serves, and will go on to; a node in a graceful
// stop is as good as gone.
func (n *node) healthy() bool {
	return !n.down && !n.paused() && !n.peerCut && !n.coordCut && n.stop == nil
}

// restartLater starts a new process in n's place after d milliseconds,
// deciding on its disk as a server's openReplicaStore does: it takes (reads
// and deletes) the disk's clean-stop record, if any; it keeps the disk as
// a member's if coord.KeepData says so (Recovered), else as the state of
// a clean stop if coord.KeepClean accepts the record (a joiner on it),
// else starts on a new one (a server sets its data directory aside). A
// server that cannot reach the coordinator to decide fails to start, and
// is started again.
func (w *World) restartLater(n *node, d int64) {
	w.after(d, func() {
		i := slices.Index(w.nodes, n)
		if i < 0 {
			return // an extra took the slot over
		}
		if w.coord.down() {
			w.restartLater(n, 500)
			return
		}
		disk, cfg := n.disk, w.coord.cfg
		rec, hasRec := disk.takeClean()
		switch {
		case coord.KeepData(cfg, n.name, disk.id) && hasRec && coord.KeepClean(cfg, rec, disk.id, disk.AppliedSeq()):
			w.stats.Inc("restart on clean state")
			w.nodes[i] = w.startNode(n.name, disk, keptCleanMember)
		case coord.KeepData(cfg, n.name, disk.id):
			w.nodes[i] = w.startNode(n.name, disk, keptMember)
		case hasRec && coord.KeepClean(cfg, rec, disk.id, disk.AppliedSeq()):
			w.stats.Inc("restart on clean state")
			w.nodes[i] = w.startNode(n.name, disk, keptClean)
		default:
			if hasRec {
				w.stats.Inc("clean-stop record refused")
				w.logf("%s: clean-stop record %+v refused at applied %d", n.name, rec, disk.AppliedSeq())
			}
			w.nodes[i] = w.startNode(n.name, newDisk(w, n.name), keptNothing)
		}
	})
}

// totalOutage kills every process at once, as a power loss does; each
// restarts on its disk. The disk of a process that had exited, waiting
// for its restart, loses what it had not synced too.
func (w *World) totalOutage() {
	w.stats.Inc("total outage")
	w.logf("total outage: every process dies")
	for _, n := range w.nodes {
		if n.down {
			n.disk.crash()
		}
		n.crash("total outage")
	}
}

// healAll ends every fault: partitions heal, pauses end, the coordinator
// comes back. Crashed nodes restart on their own schedule.
func (w *World) healAll() {
	for _, c := range w.clients {
		clear(c.cutFrom)
	}
	for _, n := range w.nodes {
		n.slowTill = min(n.slowTill, w.now)
		n.peerCut, n.coordCut = false, false
		n.pauseTill = min(n.pauseTill, w.now)
	}
	if w.coord.down() {
		w.coord.outageTill = w.now
		for _, l := range w.coord.leases {
			l.expires = max(l.expires, w.now+w.coord.ttl)
		}
	}
	w.logf("faults healed")
}
