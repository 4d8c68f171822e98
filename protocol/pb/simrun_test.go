package pb_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/lockstep/lockstep/protocol/pb"
	"github.com/lockstep/lockstep/sim"
)

// world is one simulated primary-backup group: replicas, network, master,
// clients. One seed drives every choice; nothing iterates over a map.
type world struct {
	seed  uint64
	rng   *rand.Rand
	p     simParams
	step  int64
	net   *sim.Network[pb.Message]
	links sim.LinkFaults[pb.Message] // resets and cuts
	names []string                   // of the nodes, in order
	nodes []*simNode
	by    map[string]*simNode
	m     simMaster
	cl    []*simClient
	hist  sim.History
	trace *sim.Trace
	snaps []snapRequest

	writes       []simWrite        // every write recorded in hist
	givenUp      []int             // writes (indexes) whose client gave up, not yet committed
	committed    []uint64          // committed[s]: digest of the entry committed at s (0: not yet)
	maxCommitted uint64            // the highest seq committed by any primary
	primaryOf    map[uint64]string // epoch -> the incarnation that acted as primary in it
	faulty       bool
	stats        simStats
}

// simWrite is where a recorded write went: which op, which seq at the
// primary, which entry.
type simWrite struct {
	op     sim.OpID
	seq    uint64
	digest uint64
}

// snapRequest is a snapshot transfer: requested (snap == nil) until the
// source takes it at step at, then in transfer until it is installed.
type snapRequest struct {
	at   int64
	node *simNode
	from string
	snap *simSnapshot
}

// simStats counts what happened, to show the faults were exercised.
type simStats struct {
	crashes         [pb.RoleJoining + 1]int // by role at the time of the crash
	suspicions      [pb.RoleJoining + 1]int // live nodes the master took for crashed, by role
	restarts        int
	configs         int
	failovers       int // backups promoted to primary
	behind          int // backups behind the backup promoted, at the time
	ahead           int // backups ahead of the backup promoted, at the time
	joins           int // joiners made backups
	snapshots       int
	backupSnapshots int // snapshots installed by a backup (a divergent suffix)
	resets          int
	cuts            int
	writes          int
	reads           int
	windowFull      int
	stale           int
	settled         int // writes whose client gave up, committed later
	lost            int // writes whose client gave up, lost with their primary
}

func (s *simStats) add(o simStats) {
	for i := range s.crashes {
		s.crashes[i] += o.crashes[i]
		s.suspicions[i] += o.suspicions[i]
	}
	s.restarts += o.restarts
	s.configs += o.configs
	s.failovers += o.failovers
	s.behind += o.behind
	s.ahead += o.ahead
	s.joins += o.joins
	s.snapshots += o.snapshots
	s.backupSnapshots += o.backupSnapshots
	s.resets += o.resets
	s.cuts += o.cuts
	s.writes += o.writes
	s.reads += o.reads
	s.windowFull += o.windowFull
	s.stale += o.stale
	s.settled += o.settled
	s.lost += o.lost
}

func newWorld(seed uint64, trace *sim.Trace) *world {
	rng := sim.NewRand(seed)
	w := &world{seed: seed, rng: rng, p: drawParams(rng), by: map[string]*simNode{}, trace: trace, primaryOf: map[uint64]string{}}
	w.net = sim.NewNetwork[pb.Message](rng, sim.NetworkOptions{MinDelay: 1, MaxDelay: 1 + int64(rng.IntN(1+rng.IntN(12)))})
	w.links = sim.LinkFaults[pb.Message]{Net: w.net, Rng: rng, Trace: trace}
	cfg := pb.Config{Epoch: 1}
	for i := range w.p.nodes {
		n := newSimNode(fmt.Sprintf("n%d", i+1), i, 0, w.p.opts)
		w.nodes = append(w.nodes, n)
		w.by[n.name] = n
		w.names = append(w.names, n.name)
		cfg.Members = append(cfg.Members, n.name)
	}
	for i := range w.p.clients {
		w.cl = append(w.cl, &simClient{id: i})
	}
	w.m = simMaster{cfg: cfg, size: w.p.nodes}
	w.logf("params %+v", w.p)
	for _, n := range w.nodes {
		n.core.SetConfig(cfg)
	}
	return w
}

func (w *world) logf(format string, args ...any) {
	if w.trace != nil {
		w.trace.Logf(format, args...)
	}
}

// run drives steps faulty steps and then quiet steps without faults or new
// client operations, checking the invariants after every step, liveness
// at the end, and returns the first violation.
func (w *world) run(steps, quiet int) error {
	for _, n := range w.nodes {
		if err := w.drain(n); err != nil {
			return err
		}
	}
	for w.step = 1; w.step <= int64(steps+quiet); w.step++ {
		w.trace.SetStep(w.step)
		w.faulty = w.step <= int64(steps)
		if w.step == int64(steps)+1 {
			w.links.HealAll()
		}
		if err := w.oneStep(); err != nil {
			return fmt.Errorf("step %d: %w", w.step, err)
		}
	}
	return w.finalCheck()
}

func (w *world) oneStep() error {
	if w.faulty {
		w.faults()
	}
	for _, f := range []func() error{w.master, w.deliverConfigs, w.deliverMessages, w.snapshots, w.clients, w.applyAndTick} {
		if err := f(); err != nil {
			return err
		}
	}
	return w.check()
}

// faults injects at most one crash, link reset or cut per step, heals cuts
// that are due and restarts removed crashed nodes.
func (w *world) faults() {
	w.links.HealDue(w.step)
	for _, n := range w.nodes {
		if !n.alive && n.restartAt != 0 && w.step >= n.restartAt && !w.inConfig(n.name) {
			w.restart(n)
		}
	}
	r := w.rng.Float64()
	switch {
	case r < w.p.pCrash:
		if n := w.victim(); n != nil {
			w.crash(n)
		}
	case r < w.p.pCrash+w.p.pSuspect:
		if n := w.victim(); n != nil {
			w.suspect(n)
		}
	case r < w.p.pCrash+w.p.pSuspect+w.p.pReset:
		w.stats.resets++
		w.links.ResetOne(w.names)
	case r < w.p.pCrash+w.p.pSuspect+w.p.pReset+w.p.pCut:
		w.stats.cuts += w.links.CutSome(w.step, w.names)
	}
}

func (w *world) inConfig(name string) bool {
	return slices.Contains(w.m.cfg.Members, name) || w.m.cfg.Joining == name
}

// victim picks a random live replica of the configuration to crash or
// suspect, keeping at least one other live, unsuspected complete member,
// which the master can promote; nil if there is none.
func (w *world) victim() *simNode {
	var cands, complete []*simNode
	for _, name := range w.m.cfg.Members {
		if n := w.by[name]; n.alive && !n.suspected && n.core.Status().Complete {
			complete = append(complete, n)
		}
	}
	for _, n := range w.nodes {
		if n.alive && !n.suspected && w.inConfig(n.name) && (len(complete) > 1 || !slices.Contains(complete, n)) {
			cands = append(cands, n)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	return cands[w.rng.IntN(len(cands))]
}

// crash stops n: its state is lost, and so is everything in flight to it
// and, on some links, from it. Its clients give up.
func (w *world) crash(n *simNode) {
	role := n.core.Status().Role
	w.stats.crashes[role]++
	if !n.suspected {
		n.detectAt = w.step + 1 + int64(w.rng.IntN(int(w.p.detect)))
	}
	n.alive = false
	n.restartAt = 0
	if w.rng.IntN(4) != 0 {
		n.restartAt = max(n.detectAt, w.step) + 1 + int64(w.rng.IntN(int(w.p.restart)))
	}
	n.configs = nil
	w.net.DropTo(n.name)
	for _, o := range w.nodes {
		// A crash in the middle of sending: on some links what is in
		// flight is lost, on others it still arrives, so the backups'
		// logs end at different seqs.
		if o != n && w.rng.IntN(2) == 0 {
			w.net.Reset(n.name, o.name)
		}
	}
	for _, c := range w.cl {
		if !c.busy || c.node != n {
			continue
		}
		c.busy = false // the client gives up
		switch {
		case c.read:
			w.hist.Forget(c.op) // a read has no effect
		case c.seq < uint64(len(w.committed)) && w.committed[c.seq] == w.writes[c.write].digest:
			// Another primary already committed it (n was deposed).
			w.hist.Return(c.op, nil)
			w.stats.settled++
		default:
			w.givenUp = append(w.givenUp, c.write)
		}
	}
	w.logf("crash %s (%s)", n.name, role)
}

// suspect makes the master take n for crashed (its failure detector is
// wrong: say, n lost its lease but not its links). The master removes it,
// promoting another backup if n is the primary, while n goes on in its
// configuration until the new one reaches it; then its runtime restarts it
// empty (see deliverConfigs), as a removed replica must.
func (w *world) suspect(n *simNode) {
	w.stats.suspicions[n.core.Status().Role]++
	n.suspected = true
	n.detectAt = w.step + 1 + int64(w.rng.IntN(int(w.p.detect)))
	w.logf("suspect %s (%s)", n.name, n.core.Status().Role)
}

// failed reports whether the master has noticed that n crashed, or takes
// it for crashed.
func (w *world) failed(n *simNode) bool {
	return (!n.alive || n.suspected) && w.step >= n.detectAt
}

// restart brings a removed node back empty, as a new process with lost
// state, knowing the current configuration (which does not include it).
func (w *world) restart(n *simNode) {
	fresh := newSimNode(n.name, n.index, n.incarnation+1, w.p.opts)
	*n = *fresh
	n.core.SetConfig(w.m.cfg)
	w.stats.restarts++
	w.logf("restart %s", n.name)
}

// publish makes cfg the master's configuration and schedules its delivery
// to every live node, in order per node, after a random delay.
func (w *world) publish(cfg pb.Config, why string) {
	cfg.Epoch = w.m.cfg.Epoch + 1
	w.m.cfg = cfg
	w.stats.configs++
	w.logf("config %d %v joining %q: %s", cfg.Epoch, cfg.Members, cfg.Joining, why)
	for _, n := range w.nodes {
		if !n.alive {
			continue
		}
		at := w.step + int64(w.rng.IntN(int(w.p.cfgDelay)+1))
		if k := len(n.configs); k > 0 {
			at = max(at, n.configs[k-1].at)
		}
		n.configs = append(n.configs, timedConfig{at: at, cfg: cfg})
	}
}

// master makes at most one change per step: promote a backup when it
// notices the primary crashed, or remove a crashed backup or joiner, or
// make a caught-up joiner a backup, or add a restarted node as joiner.
func (w *world) master() error {
	for _, n := range w.nodes {
		if n.alive && (w.step+int64(n.index))%w.p.report == 0 {
			n.report = n.core.Status()
		}
	}
	cfg := w.m.cfg
	if p := w.by[cfg.Members[0]]; !p.alive || p.suspected {
		if w.failed(p) {
			w.failover()
		}
		return nil
	}
	for _, name := range append(slices.Clone(cfg.Members[1:]), cfg.Joining) {
		n := w.by[name]
		if n == nil || !w.failed(n) {
			continue
		}
		next := pb.Config{Members: slices.DeleteFunc(slices.Clone(cfg.Members), func(s string) bool { return s == name }), Joining: cfg.Joining}
		if name == cfg.Joining {
			next.Joining = ""
		}
		w.publish(next, "remove "+name)
		return nil
	}
	if j := w.by[cfg.Joining]; j != nil && j.alive && !j.suspected {
		if st := j.report; st.Epoch == cfg.Epoch && st.Role == pb.RoleJoining && st.CaughtUp {
			w.stats.joins++
			w.publish(pb.Config{Members: append(slices.Clone(cfg.Members), j.name)}, "make "+j.name+" a backup")
		}
		return nil
	}
	if cfg.Joining != "" || len(cfg.Members) >= w.m.size {
		return nil
	}
	for _, n := range w.nodes {
		if n.alive && !n.suspected && !w.inConfig(n.name) {
			w.publish(pb.Config{Members: slices.Clone(cfg.Members), Joining: n.name}, "add "+n.name)
			return nil
		}
	}
	return nil
}

// failover promotes the live complete backup with the highest applied seq
// (then last seq) as last reported, dropping the crashed primary; it waits
// if there is none.
func (w *world) failover() {
	cfg := w.m.cfg
	var best *simNode
	var bs pb.Status
	for _, name := range cfg.Members[1:] {
		n := w.by[name]
		if !n.alive || n.suspected {
			continue
		}
		st := n.report
		if st.Complete && (best == nil || st.Applied > bs.Applied || (st.Applied == bs.Applied && st.Last > bs.Last)) {
			best, bs = n, st
		}
	}
	if best == nil {
		return
	}
	next := pb.Config{Members: []string{best.name}, Joining: cfg.Joining}
	last := best.core.Status().Last
	for _, name := range cfg.Members[1:] {
		if name == best.name {
			continue
		}
		next.Members = append(next.Members, name)
		if n := w.by[name]; n.alive {
			switch st := n.core.Status(); {
			case st.Last < last:
				w.stats.behind++
			case st.Last > last:
				w.stats.ahead++
			}
		}
	}
	w.stats.failovers++
	w.publish(next, fmt.Sprintf("promote %s (applied %d, last %d)", best.name, bs.Applied, bs.Last))
}

func (w *world) deliverConfigs() error {
	for _, n := range w.nodes {
		for n.alive && len(n.configs) > 0 && n.configs[0].at <= w.step {
			cfg := n.configs[0].cfg
			n.configs = n.configs[1:]
			n.core.SetConfig(cfg)
			if err := w.drain(n); err != nil {
				return err
			}
			if n.suspected && n.core.Status().Role == pb.RoleNone {
				w.logf("%s learns it was removed", n.name)
				w.crash(n)
			}
		}
	}
	return nil
}

func (w *world) deliverMessages() error {
	for _, p := range w.net.Due(w.step) {
		n := w.by[p.To]
		if !n.alive {
			continue
		}
		err := n.core.Step(p.Msg)
		switch {
		case errors.Is(err, pb.ErrStaleEpoch):
			w.stats.stale++
			continue
		case err != nil:
			return violation("%s: %v", n.name, err)
		}
		if w.trace != nil {
			w.logf("%s <- %s %s e%d seq %d (%d entries)", n.name, p.From, p.Msg.Type, p.Msg.Epoch, p.Msg.Seq, len(p.Msg.Entries))
		}
		if err := w.drain(n); err != nil {
			return err
		}
	}
	return nil
}
