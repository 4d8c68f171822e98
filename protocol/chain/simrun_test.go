package chain_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/lockstep/lockstep/protocol/chain"
	"github.com/lockstep/lockstep/sim"
)

// world is one simulated chain group: replicas, network, master, clients.
// One seed drives every choice; nothing iterates over a map.
type world struct {
	seed  uint64
	rng   *rand.Rand
	p     simParams
	step  int64
	net   *sim.Network[chain.Message]
	links sim.LinkFaults[chain.Message] // resets and cuts
	names []string                      // of the nodes, in order
	nodes []*simNode
	by    map[string]*simNode
	m     simMaster
	cl    []*simClient
	hist  sim.History
	trace *sim.Trace
	snaps []snapRequest

	writes       []simWrite // every write recorded in hist
	givenUp      []int      // writes (indexes) whose client gave up, not yet committed
	committed    []uint64   // committed[s]: digest of the entry committed at s (0: not yet)
	maxCommitted uint64
	faulty       bool
	stats        simStats
}

// snapRequest is a snapshot transfer: requested (snap == nil) until the
// source takes it at step at, then in transfer until it is installed.
// simWrite is where a recorded write went: which op, which seq at the
// head, which entry.
type simWrite struct {
	op     sim.OpID
	seq    uint64
	digest uint64
}

type snapRequest struct {
	at     int64
	joiner *simNode
	from   string
	snap   *simSnapshot
}

// simStats counts what happened, to show the faults were exercised.
type simStats struct {
	crashes    [chain.RoleJoining + 1]int // by role at the time of the crash
	restarts   int
	configs    int
	promotions int
	snapshots  int
	resets     int
	cuts       int
	writes     int
	reads      int
	windowFull int
	stale      int
	settled    int // writes whose client gave up, committed later
	lost       int // writes whose client gave up, lost with their head
}

func (s *simStats) add(o simStats) {
	for i := range s.crashes {
		s.crashes[i] += o.crashes[i]
	}
	s.restarts += o.restarts
	s.configs += o.configs
	s.promotions += o.promotions
	s.snapshots += o.snapshots
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
	w := &world{seed: seed, rng: rng, p: drawParams(rng), by: map[string]*simNode{}, trace: trace}
	w.net = sim.NewNetwork[chain.Message](rng, sim.NetworkOptions{MinDelay: 1, MaxDelay: 1 + int64(rng.IntN(1+rng.IntN(12)))})
	w.links = sim.LinkFaults[chain.Message]{Net: w.net, Rng: rng, Trace: trace}
	cfg := chain.Config{Epoch: 1}
	for i := range w.p.nodes {
		n := newSimNode(fmt.Sprintf("n%d", i+1), i, w.p.opts)
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
		w.crashOne()
	case r < w.p.pCrash+w.p.pReset:
		w.stats.resets++
		w.links.ResetOne(w.names)
	case r < w.p.pCrash+w.p.pReset+w.p.pCut:
		w.stats.cuts += w.links.CutSome(w.step, w.names)
	}
}

func (w *world) inConfig(name string) bool {
	return slices.Contains(w.m.cfg.Members, name) || w.m.cfg.Joining == name
}

// crashOne crashes a random live replica of the configuration, keeping at
// least one live member.
func (w *world) crashOne() {
	var cands, complete []*simNode
	for _, name := range w.m.cfg.Members {
		if n := w.by[name]; n.alive && n.core.Status().Complete {
			complete = append(complete, n)
		}
	}
	for _, n := range w.nodes {
		if n.alive && w.inConfig(n.name) && (len(complete) > 1 || !slices.Contains(complete, n)) {
			cands = append(cands, n)
		}
	}
	if len(cands) == 0 {
		return
	}
	n := cands[w.rng.IntN(len(cands))]
	role := n.core.Status().Role
	w.stats.crashes[role]++
	n.alive = false
	n.downSince = w.step
	n.detectAt = w.step + 1 + int64(w.rng.IntN(int(w.p.detect)))
	n.restartAt = 0
	if w.rng.IntN(4) != 0 {
		n.restartAt = n.detectAt + 1 + int64(w.rng.IntN(int(w.p.restart)))
	}
	n.configs = nil
	w.net.DropTo(n.name)
	for _, c := range w.cl {
		if c.busy && c.node == n {
			c.busy = false // the client gives up: its write is pending
			w.givenUp = append(w.givenUp, c.write)
		}
	}
	w.logf("crash %s (%s)", n.name, role)
}

// restart brings a removed node back empty, as a new process with lost
// state, knowing the current configuration (which does not include it).
func (w *world) restart(n *simNode) {
	fresh := newSimNode(n.name, n.index, w.p.opts)
	*n = *fresh
	n.core.SetConfig(w.m.cfg)
	w.stats.restarts++
	w.logf("restart %s", n.name)
}

// publish makes cfg the master's configuration and schedules its delivery
// to every live node, in order per node, after a random delay.
func (w *world) publish(cfg chain.Config, why string) {
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

// master removes one noticed crash, or promotes a caught-up joiner, or
// adds a restarted node as joiner: one change per step.
func (w *world) master() error {
	cfg := w.m.cfg
	for _, name := range append(slices.Clone(cfg.Members), cfg.Joining) {
		n := w.by[name]
		if n == nil || n.alive || w.step < n.detectAt {
			continue
		}
		next := chain.Config{Members: slices.DeleteFunc(slices.Clone(cfg.Members), func(s string) bool { return s == name }), Joining: cfg.Joining}
		if name == cfg.Joining {
			next.Joining = ""
		}
		w.publish(next, "remove "+name)
		return nil
	}
	if j := w.by[cfg.Joining]; j != nil && j.alive {
		if st := j.core.Status(); st.Epoch == cfg.Epoch && st.Role == chain.RoleJoining && st.CaughtUp {
			w.stats.promotions++
			w.publish(chain.Config{Members: append(slices.Clone(cfg.Members), j.name)}, "promote "+j.name)
		}
		return nil
	}
	if cfg.Joining != "" || len(cfg.Members) >= w.m.size {
		return nil
	}
	for _, n := range w.nodes {
		if n.alive && !w.inConfig(n.name) {
			w.publish(chain.Config{Members: slices.Clone(cfg.Members), Joining: n.name}, "add "+n.name)
			return nil
		}
	}
	return nil
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
		case errors.Is(err, chain.ErrStaleEpoch):
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
