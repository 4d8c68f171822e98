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
		{What: "head crashes", N: s.Crashes[chain.RoleHead]},
		{What: "middle crashes", N: s.Crashes[chain.RoleMiddle]},
		{What: "tail crashes", N: s.Crashes[chain.RoleTail]},
		{What: "joiner crashes", N: s.Crashes[chain.RoleJoining]},
		{What: "promotions", N: s.promotions},
		{What: "restarts on kept state", N: s.Kept},
		{What: "joins from a kept state by the retained log", N: s.logJoins},
		{What: "snapshots", N: s.Snapshots},
		{What: "link resets", N: s.Resets},
		{What: "cuts", N: s.Cuts},
		{What: "full windows", N: s.WindowFull},
		{What: "stale messages", N: s.Stale},
		{What: "reads", N: s.Reads},
	}
}

// porcupineTimeout bounds the check of one seed; the default seeds take a
// few milliseconds each.
const porcupineTimeout = 10 * time.Second

// runSeed simulates one seed and checks its history. A write whose client
// gave up and whose entry never committed is forgotten (sim.Writes): no
// read can have seen it, since a tail applies only entries every later
// member holds.
func runSeed(seed uint64, steps int, trace *sim.Trace) (simStats, error) {
	w := newWorld(seed, trace)
	if err := w.Run(steps, quietSteps); err != nil {
		return w.stats, err
	}
	if n := w.Settle(); n != 0 {
		panic(fmt.Sprintf("%d operations still pending after the quiet steps", n))
	}
	return w.stats, sim.CheckLinearizable(&w.Hist, porcupineTimeout, sim.VisualizationPath("chain", seed))
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
	for _, name := range w.Cfg.Members {
		if n := w.By[name]; n.Alive {
			live = append(live, n)
		}
	}
	for i := 0; i+1 < len(live); i++ {
		if err := checkPair(live[i], live[i+1], true); err != nil {
			return err
		}
	}
	if j := w.By[w.Cfg.Joining]; j != nil && j.Alive && len(live) > 0 {
		if err := checkPair(live[len(live)-1], j, false); err != nil {
			return err
		}
	}
	// A tail acks as many entries beyond its joiner as fit in RetainBytes,
	// and every entry takes at least a byte.
	bound := uint64(w.p.opts.Window + max(w.p.opts.JoinWindow, w.p.opts.RetainBytes))
	for _, n := range w.Nodes {
		if !n.Alive || !w.InConfig(n.Name) {
			continue
		}
		st := n.Core.Detail()
		if st.Applied != n.Applied {
			return violation("%s: core applied %d, runtime %d", n.Name, st.Applied, n.Applied)
		}
		b := bound
		if st.Role == chain.RoleMiddle {
			// The head trims at the tail's direct acks, which a middle
			// learns later; right after a reconfiguration it may hold up
			// to another Window (see Options.Window).
			b += uint64(w.p.opts.Window)
		}
		if uint64(st.Pending) > b {
			return violation("%s (%s): log holds %d entries, bound %d", n.Name, st.Role, st.Pending, b)
		}
		// A member that is not complete yet (a promoted joiner) may lack
		// entries the old tail committed; it may not serve or lead.
		if st.Complete && n.Applied < w.Writes.MaxCommitted() {
			return violation("%s (%s) applied %d, but %d is committed", n.Name, st.Role, n.Applied, w.Writes.MaxCommitted())
		}
		if st.ReadReady != (st.Complete && (st.Role == chain.RoleTail || st.Role == chain.RoleSingle)) {
			return violation("%s: ReadReady %t for a %s, complete %t", n.Name, st.ReadReady, st.Role, st.Complete)
		}
	}
	return nil
}

// checkPair checks a predecessor a and its successor b: b's history is a
// prefix of a's, and if b is a complete member, a's log still holds
// everything b lacks (history(a) = history(b) + sent(a)). A joiner, or a
// promoted joiner not yet complete, may need a snapshot instead: the old
// tail acknowledged up to JoinWindow entries beyond it.
//
// A joiner that restarted on a kept state may be ahead of a tail that is
// not complete yet (its state was committed by an earlier tail that the
// new one has not caught up with): then the tail's history must be a
// prefix of the joiner's, and the joiner waits for it.
func checkPair(a, b *simNode, member bool) error {
	if !member && b.KeptFrom > 0 && b.Applied > a.Applied && !a.Core.Detail().Complete {
		if a.Prefix[a.Applied] != b.Prefix[a.Applied] {
			return violation("history of %s (%d) is not a prefix of the kept joiner %s's (%d)", a.Name, a.Applied, b.Name, b.Applied)
		}
		return nil
	}
	if b.Applied > a.Applied || b.Prefix[b.Applied] != a.Prefix[b.Applied] {
		return violation("history of %s (%d) is not a prefix of %s's (%d)", b.Name, b.Applied, a.Name, a.Applied)
	}
	if !member || !b.Core.Detail().Complete {
		return nil
	}
	st := a.Core.Detail()
	if base := st.Last - uint64(st.Pending); base > b.Applied {
		return violation("%s's log starts after %d, but successor %s applied only %d", a.Name, base, b.Name, b.Applied)
	}
	return nil
}

// finalCheck runs after the quiet steps: every live member applied every
// entry the head has, the head committed all of it, and no write whose head
// survived is still waiting.
func (w *world) finalCheck() error {
	head := w.By[w.Cfg.Members[0]]
	st := head.Core.Detail()
	if st.Commit != st.Last || st.Applied != st.Last {
		return violation("liveness: head %s has last %d, applied %d, commit %d after %d quiet steps", head.Name, st.Last, st.Applied, st.Commit, quietSteps)
	}
	for _, name := range w.Cfg.Members {
		if n := w.By[name]; n.Alive && n.Applied != st.Last {
			return violation("liveness: %s applied %d of %d", name, n.Applied, st.Last)
		}
	}
	if c := w.Waiting(); c != nil {
		return violation("liveness: client %d still waits for seq %d at %s", c.ID, c.Seq, c.Node.Name)
	}
	if st.Epoch != w.Cfg.Epoch {
		return violation("liveness: head %s in epoch %d, master in %d", head.Name, st.Epoch, w.Cfg.Epoch)
	}
	return nil
}
