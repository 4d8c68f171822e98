package chain_test

import (
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/lockstep/lockstep/protocol/chain"
	"github.com/lockstep/lockstep/sim"
)

var simFlags = sim.RegisterSeedFlags(flag.CommandLine, 2000)

// quietSteps follow the faulty ones: no faults, no new operations, so every
// write whose head survived must complete and every replica converge.
const quietSteps = 600

// TestSim runs the chain core through seeded crashes, reconfigurations,
// snapshots, link resets and partitions, checks the invariants after every
// step and the clients' history with porcupine at the end. A failure prints
// the seed and the command that replays it.
func TestSim(t *testing.T) {
	simTest().Main(t)
}

// simTest is the driver of TestSim and TestSimDeterministic.
func simTest() *sim.SeedTest[simStats] {
	return &sim.SeedTest[simStats]{
		Flags:    simFlags,
		Package:  "./protocol/chain",
		Quiet:    quietSteps,
		Short:    testing.Short(),
		Verbose:  testing.Verbose(),
		Run:      runSeed,
		Merge:    (*simStats).add,
		Coverage: coverage,
	}
}

// coverage lists the faults the simulator is meant to exercise: one whose
// faults never fire checks nothing.
func coverage(s simStats) []sim.Tally {
	return []sim.Tally{
		{What: "head crashes", N: s.crashes[chain.RoleHead]},
		{What: "middle crashes", N: s.crashes[chain.RoleMiddle]},
		{What: "tail crashes", N: s.crashes[chain.RoleTail]},
		{What: "joiner crashes", N: s.crashes[chain.RoleJoining]},
		{What: "promotions", N: s.promotions},
		{What: "snapshots", N: s.snapshots},
		{What: "link resets", N: s.resets},
		{What: "cuts", N: s.cuts},
		{What: "full windows", N: s.windowFull},
		{What: "stale messages", N: s.stale},
		{What: "reads", N: s.reads},
	}
}

// porcupineTimeout bounds the check of one seed; the default seeds take a
// few milliseconds each.
const porcupineTimeout = 10 * time.Second

// runSeed simulates one seed and checks its history.
func runSeed(seed uint64, steps int, trace *sim.Trace) (simStats, error) {
	w := newWorld(seed, trace)
	if err := w.run(steps, quietSteps); err != nil {
		return w.stats, err
	}
	w.settlePending()
	return w.stats, sim.CheckLinearizable(&w.hist, porcupineTimeout, sim.VisualizationPath("chain", seed))
}

// settlePending forgets, after the quiet steps, every write whose client
// gave up and whose entry was never committed (settleGivenUp returned the
// others when they were): it never will be, and no read can have seen it,
// since a tail applies only entries every later member holds. Porcupine
// would otherwise try every place for it, which is exponential in their
// number.
func (w *world) settlePending() {
	for _, k := range w.givenUp {
		w.hist.Forget(w.writes[k].op)
		w.stats.lost++
	}
	w.givenUp = nil
	if n := w.hist.Pending(); n != 0 {
		panic(fmt.Sprintf("%d operations still pending after the quiet steps", n))
	}
}

// TestSimDeterministic runs seeds twice with a trace and compares: the
// same seed must give the same run, or a failing seed could not be
// replayed.
func TestSimDeterministic(t *testing.T) {
	simTest().Deterministic(t, 400, 100, 1, 2, 3)
}

// check verifies the invariants of the paper after a step.
func (w *world) check() error {
	var live []*simNode
	for _, name := range w.m.cfg.Members {
		if n := w.by[name]; n.alive {
			live = append(live, n)
		}
	}
	for i := 0; i+1 < len(live); i++ {
		if err := checkPair(live[i], live[i+1], true); err != nil {
			return err
		}
	}
	if j := w.by[w.m.cfg.Joining]; j != nil && j.alive && len(live) > 0 {
		if err := checkPair(live[len(live)-1], j, false); err != nil {
			return err
		}
	}
	bound := uint64(w.p.opts.Window + w.p.opts.JoinWindow)
	for _, n := range w.nodes {
		if !n.alive || !w.inConfig(n.name) {
			continue
		}
		st := n.core.Status()
		if st.Applied != n.applied {
			return violation("%s: core applied %d, runtime %d", n.name, st.Applied, n.applied)
		}
		if uint64(st.Pending) > bound {
			return violation("%s: log holds %d entries, bound %d", n.name, st.Pending, bound)
		}
		// A member that is not complete yet (a promoted joiner) may lack
		// entries the old tail committed; it may not serve or lead.
		if st.Complete && n.applied < w.maxCommitted {
			return violation("%s (%s) applied %d, but %d is committed", n.name, st.Role, n.applied, w.maxCommitted)
		}
		if st.ReadReady != (st.Complete && (st.Role == chain.RoleTail || st.Role == chain.RoleSingle)) {
			return violation("%s: ReadReady %t for a %s, complete %t", n.name, st.ReadReady, st.Role, st.Complete)
		}
	}
	return nil
}

// checkPair checks a predecessor a and its successor b: b's history is a
// prefix of a's, and if b is a complete member, a's log still holds
// everything b lacks (history(a) = history(b) + sent(a)). A joiner, or a
// promoted joiner not yet complete, may need a snapshot instead: the old
// tail acknowledged up to JoinWindow entries beyond it.
func checkPair(a, b *simNode, member bool) error {
	if b.applied > a.applied || b.hist[b.applied] != a.hist[b.applied] {
		return violation("history of %s (%d) is not a prefix of %s's (%d)", b.name, b.applied, a.name, a.applied)
	}
	if !member || !b.core.Status().Complete {
		return nil
	}
	st := a.core.Status()
	if base := st.Last - uint64(st.Pending); base > b.applied {
		return violation("%s's log starts after %d, but successor %s applied only %d", a.name, base, b.name, b.applied)
	}
	return nil
}

// finalCheck runs after the quiet steps: every live member applied every
// entry the head has, the head committed all of it, and no write whose head
// survived is still waiting.
func (w *world) finalCheck() error {
	head := w.by[w.m.cfg.Members[0]]
	st := head.core.Status()
	if st.Commit != st.Last || st.Applied != st.Last {
		return violation("liveness: head %s has last %d, applied %d, commit %d after %d quiet steps", head.name, st.Last, st.Applied, st.Commit, quietSteps)
	}
	for _, name := range w.m.cfg.Members {
		if n := w.by[name]; n.alive && n.applied != st.Last {
			return violation("liveness: %s applied %d of %d", name, n.applied, st.Last)
		}
	}
	for _, c := range w.cl {
		if c.busy {
			return violation("liveness: client %d still waits for seq %d at %s", c.id, c.seq, c.node.name)
		}
	}
	if st.Epoch != w.m.cfg.Epoch {
		return violation("liveness: head %s in epoch %d, master in %d", head.name, st.Epoch, w.m.cfg.Epoch)
	}
	return nil
}
