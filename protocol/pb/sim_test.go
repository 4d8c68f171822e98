package pb_test

import (
	"flag"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/lockstep/lockstep/protocol/pb"
	"github.com/lockstep/lockstep/sim"
)

var simFlags = sim.RegisterSeedFlags(flag.CommandLine, 2000)

// quietSteps follow the faulty ones: no faults, no new operations, so every
// write whose primary survived must complete and every replica converge.
const quietSteps = 600

// TestSim runs the primary-backup core through seeded crashes, failovers,
// joins with snapshots, link resets and partitions, checks the invariants
// after every step and the clients' history with porcupine at the end. A
// failure prints the seed and the command that replays it.
func TestSim(t *testing.T) {
	simTest().Main(t)
}

// simTest is the driver of TestSim and TestSimDeterministic.
func simTest() *sim.SeedTest[simStats] {
	return &sim.SeedTest[simStats]{
		Flags:    simFlags,
		Package:  "./protocol/pb",
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
		{What: "primary crashes", N: s.Crashes[pb.RolePrimary]},
		{What: "backup crashes", N: s.Crashes[pb.RoleBackup]},
		{What: "joiner crashes", N: s.Crashes[pb.RoleJoining]},
		{What: "live primaries removed", N: s.Suspicions[pb.RolePrimary]},
		{What: "live backups removed", N: s.Suspicions[pb.RoleBackup]},
		{What: "failovers", N: s.failovers},
		{What: "backups behind a new primary", N: s.behind},
		{What: "backups ahead of a new primary", N: s.ahead},
		{What: "joiners made backups", N: s.joins},
		{What: "restarts on kept state", N: s.Kept},
		{What: "joins from a kept state by the retained log", N: s.logJoins},
		{What: "snapshots", N: s.Snapshots},
		{What: "snapshots installed by backups", N: s.backupSnapshots},
		{What: "link resets", N: s.Resets},
		{What: "cuts", N: s.Cuts},
		{What: "full windows", N: s.WindowFull},
		{What: "stale messages", N: s.Stale},
		{What: "reads", N: s.Reads},
		{What: "given-up writes committed by a new primary", N: s.Settled},
	}
}

// porcupineTimeout bounds the check of one seed; the default seeds take a
// few milliseconds each.
const porcupineTimeout = 10 * time.Second

// runSeed simulates one seed and checks its history. A write whose client
// gave up and whose entry never committed is forgotten (sim.Writes): no
// read can have seen it, since a read is released only once everything it
// saw is committed.
func runSeed(seed uint64, steps int, trace *sim.Trace) (simStats, error) {
	w := newWorld(seed, trace)
	if err := w.Run(steps, quietSteps); err != nil {
		return w.stats, err
	}
	if n := w.Settle(); n != 0 {
		panic(fmt.Sprintf("%d operations still pending after the quiet steps", n))
	}
	return w.stats, sim.CheckLinearizable(&w.Hist, porcupineTimeout, sim.VisualizationPath("pb", seed))
}

// TestSimDeterministic runs seeds twice with a trace and compares: the
// same seed must give the same run, or a failing seed could not be
// replayed.
func TestSimDeterministic(t *testing.T) {
	simTest().Deterministic(t, 400, 100, 1, 2, 3)
}

// check verifies the invariants after a step: the runtime and the core
// agree; one primary per epoch; every complete member holds every
// committed entry; a synced backup's history is a prefix of its
// primary's. (That no two entries are committed at one seq, and that no
// live replica holds another entry at a committed seq, is checked as
// entries commit and apply.)
func (w *world) check() error {
	for _, n := range w.Nodes {
		if !n.Alive {
			continue
		}
		st := n.Core.Detail()
		if st.Applied != n.Applied {
			return violation("%s: core applied %d, runtime %d", n.Name, st.Applied, n.Applied)
		}
		if st.Role == pb.RolePrimary {
			if err := w.actsAsPrimary(n, st.Epoch); err != nil {
				return err
			}
		}
		// A joiner made backup is not complete until it caught up with
		// what the primary may have committed without it.
		if w.InConfig(n.Name) && st.Complete && n.Applied < w.Writes.MaxCommitted() {
			return violation("%s (%s) is complete with %d applied, but %d is committed", n.Name, st.Role, n.Applied, w.Writes.MaxCommitted())
		}
	}
	return w.checkPrefixes()
}

// checkPrefixes checks that every backup or joiner synced with the
// master's primary, in the primary's epoch, holds a prefix of its history.
func (w *world) checkPrefixes() error {
	p := w.By[w.Cfg.Members[0]]
	if !p.Alive {
		return nil
	}
	ps := p.Core.Detail()
	if ps.Role != pb.RolePrimary {
		return nil
	}
	for _, n := range w.Nodes {
		if n == p || !n.Alive {
			continue
		}
		st := n.Core.Detail()
		if st.Epoch != ps.Epoch || !st.Synced {
			continue
		}
		k := min(n.Applied, p.Applied)
		if st.Last > ps.Last || n.Prefix[k] != p.Prefix[k] || st.Lineage != ps.Lineage {
			return violation("%s (%s, last %d, lineage %d) is synced but not a prefix of primary %s (last %d, lineage %d) at %d",
				n.Name, st.Role, st.Last, st.Lineage, p.Name, ps.Last, ps.Lineage, k)
		}
	}
	return nil
}

// finalCheck runs after the quiet steps: the primary committed everything
// it has, every live node became a member and applied it, and no client
// still waits.
func (w *world) finalCheck() error {
	p := w.By[w.Cfg.Members[0]]
	st := p.Core.Detail()
	if !p.Alive || st.Role != pb.RolePrimary || st.Epoch != w.Cfg.Epoch {
		return violation("liveness: primary %s alive %t, %s in epoch %d, master in %d", p.Name, p.Alive, st.Role, st.Epoch, w.Cfg.Epoch)
	}
	if st.Commit != st.Last || st.Applied != st.Last {
		return violation("liveness: primary %s has last %d, applied %d, commit %d after %d quiet steps", p.Name, st.Last, st.Applied, st.Commit, quietSteps)
	}
	for _, n := range w.Nodes {
		if !n.Alive {
			continue
		}
		if !slices.Contains(w.Cfg.Members, n.Name) {
			return violation("liveness: %s is alive but not a member after %d quiet steps (joining %q)", n.Name, quietSteps, w.Cfg.Joining)
		}
		if n.Applied != st.Last {
			return violation("liveness: %s applied %d of %d", n.Name, n.Applied, st.Last)
		}
	}
	if c := w.Waiting(); c != nil {
		return violation("liveness: client %d still waits for seq %d at %s", c.ID, c.Seq, c.Node.Name)
	}
	return nil
}
