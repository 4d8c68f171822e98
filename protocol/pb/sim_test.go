package pb_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/lockstep/lockstep/protocol/pb"
	"github.com/lockstep/lockstep/sim"
)

var (
	flagSeed  = flag.Uint64("seed", 0, "TestSim: run only this seed, tracing every event with -v")
	flagSeeds = flag.Int("seeds", 0, "TestSim: how many seeds to run (default 300, 40 with -short)")
	flagSteps = flag.Int("steps", 2000, "TestSim: faulty steps per seed")
	flagFirst = flag.Uint64("firstseed", 1, "TestSim: the first of the -seeds seeds")
)

// quietSteps follow the faulty ones: no faults, no new operations, so every
// write whose primary survived must complete and every replica converge.
const quietSteps = 600

// TestSim runs the primary-backup core through seeded crashes, failovers,
// joins with snapshots, link resets and partitions, checks the invariants
// after every step and the clients' history with porcupine at the end. A
// failure prints the seed and the command that replays it.
func TestSim(t *testing.T) {
	if *flagSeed != 0 {
		var echo *os.File
		if testing.Verbose() {
			echo = os.Stdout
		}
		st, err := runSeed(*flagSeed, *flagSteps, &sim.Trace{Echo: echo})
		t.Logf("seed %d: %v", *flagSeed, st)
		if err != nil {
			t.Fatalf("seed %d: %v", *flagSeed, err)
		}
		return
	}
	seeds := *flagSeeds
	if seeds == 0 {
		seeds = 300
		if testing.Short() {
			seeds = 40
		}
	}
	start := time.Now()
	total, failed := runSeeds(t, *flagFirst, seeds, *flagSteps)
	t.Logf("%d seeds x %d+%d steps in %v: %v", seeds, *flagSteps, quietSteps, time.Since(start).Round(time.Millisecond), total)
	if failed {
		return
	}
	if seeds >= 100 && *flagSteps >= 1000 {
		checkCoverage(t, total)
	}
	if *flagSeeds == 0 && *flagFirst == 1 && total.inconclusive > 0 {
		t.Errorf("%d default seeds were too concurrent for porcupine to check", total.inconclusive)
	}
}

// runSeeds runs seeds on every CPU and reports each failure with its replay
// command.
func runSeeds(t *testing.T, first uint64, seeds, steps int) (simStats, bool) {
	var (
		mu     sync.Mutex
		total  simStats
		failed bool
		next   = first
		wg     sync.WaitGroup
	)
	end := first + uint64(seeds)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				mu.Lock()
				seed := next
				next++
				stop := failed || seed >= end
				mu.Unlock()
				if stop {
					return
				}
				st, err := runSeed(seed, steps, nil)
				mu.Lock()
				total.add(st)
				if errors.Is(err, errInconclusive) {
					t.Logf("seed %d: %v (inconclusive, not a failure); replay: go test ./protocol/pb -run 'TestSim$' -seed %d -steps %d -v",
						seed, err, seed, steps)
					err = nil
				}
				if err != nil && !failed {
					failed = true
					t.Errorf("seed %d: %v\n%s\nreplay: go test ./protocol/pb -run 'TestSim$' -seed %d -steps %d -v",
						seed, err, replayTail(seed, steps), seed, steps)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return total, failed
}

// replayTail runs a failing seed again with a trace and returns its last
// events.
func replayTail(seed uint64, steps int) string {
	tr := &sim.Trace{Keep: 60}
	runSeed(seed, steps, tr)
	var b strings.Builder
	b.WriteString("last events:\n")
	tr.Dump(&b)
	return b.String()
}

// checkCoverage fails if the seeds never exercised a fault the simulator
// is meant to exercise: it would be a simulator that checks nothing.
func checkCoverage(t *testing.T, s simStats) {
	t.Helper()
	for _, c := range []struct {
		what string
		n    int
	}{
		{"primary crashes", s.crashes[pb.RolePrimary]},
		{"backup crashes", s.crashes[pb.RoleBackup]},
		{"joiner crashes", s.crashes[pb.RoleJoining]},
		{"live primaries removed", s.suspicions[pb.RolePrimary]},
		{"live backups removed", s.suspicions[pb.RoleBackup]},
		{"failovers", s.failovers},
		{"backups behind a new primary", s.behind},
		{"backups ahead of a new primary", s.ahead},
		{"joiners made backups", s.joins},
		{"snapshots", s.snapshots},
		{"snapshots installed by backups", s.backupSnapshots},
		{"link resets", s.resets},
		{"cuts", s.cuts},
		{"full windows", s.windowFull},
		{"stale messages", s.stale},
		{"reads", s.reads},
		{"given-up writes committed by a new primary", s.settled},
	} {
		if c.n == 0 {
			t.Errorf("no %s in any seed", c.what)
		}
	}
}

// errInconclusive marks a seed whose history porcupine could not decide in
// time: not a protocol failure, but a history too concurrent to check.
var errInconclusive = errors.New("porcupine timed out")

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
	res, info := sim.CheckKV(&w.hist, porcupineTimeout)
	switch res {
	case porcupine.Ok:
		return w.stats, nil
	case porcupine.Unknown:
		w.stats.inconclusive++
		return w.stats, fmt.Errorf("%w on %d operations", errInconclusive, w.hist.Len())
	}
	path := filepath.Join(os.TempDir(), fmt.Sprintf("lockstep-pb-sim-%d.html", seed))
	if err := porcupine.VisualizePath(sim.KVModel(), info, path); err != nil {
		path = err.Error()
	}
	return w.stats, fmt.Errorf("history of %d operations is not linearizable (see %s)", w.hist.Len(), path)
}

// settlePending forgets, after the quiet steps, every write whose client
// gave up and whose entry was never committed (settleGivenUp returned the
// others when they were): it never will be, and no read can have seen it,
// since a read is released only once everything it saw is committed.
// Porcupine would otherwise try every place for it, which is exponential
// in their number.
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
	for _, seed := range []uint64{1, 2, 3} {
		var digests [2]uint64
		var counts [2]int
		for i := range digests {
			tr := &sim.Trace{Keep: 1}
			if _, err := runSeed(seed, 400, tr); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			digests[i], counts[i] = tr.Digest(), tr.Count()
		}
		if digests[0] != digests[1] || counts[0] != counts[1] || counts[0] < 100 {
			t.Errorf("seed %d: runs differ or are empty: %d events %x, %d events %x", seed, counts[0], digests[0], counts[1], digests[1])
		}
	}
}

// check verifies the invariants after a step: the runtime and the core
// agree; one primary per epoch; every complete member holds every
// committed entry; a synced backup's history is a prefix of its
// primary's. (That no two entries are committed at one seq, and that no
// live replica holds another entry at a committed seq, is checked as
// entries commit and apply.)
func (w *world) check() error {
	for _, n := range w.nodes {
		if !n.alive {
			continue
		}
		st := n.core.Status()
		if st.Applied != n.applied {
			return violation("%s: core applied %d, runtime %d", n.name, st.Applied, n.applied)
		}
		if st.Role == pb.RolePrimary {
			if err := w.actsAsPrimary(n, st.Epoch); err != nil {
				return err
			}
		}
		// A joiner made backup is not complete until it caught up with
		// what the primary may have committed without it.
		if w.inConfig(n.name) && st.Complete && n.applied < w.maxCommitted {
			return violation("%s (%s) is complete with %d applied, but %d is committed", n.name, st.Role, n.applied, w.maxCommitted)
		}
	}
	return w.checkPrefixes()
}

// checkPrefixes checks that every backup or joiner synced with the
// master's primary, in the primary's epoch, holds a prefix of its history.
func (w *world) checkPrefixes() error {
	p := w.by[w.m.cfg.Members[0]]
	if !p.alive {
		return nil
	}
	ps := p.core.Status()
	if ps.Role != pb.RolePrimary {
		return nil
	}
	for _, n := range w.nodes {
		if n == p || !n.alive {
			continue
		}
		st := n.core.Status()
		if st.Epoch != ps.Epoch || !st.Synced {
			continue
		}
		k := min(n.applied, p.applied)
		if st.Last > ps.Last || n.hist[k] != p.hist[k] || st.Lineage != ps.Lineage {
			return violation("%s (%s, last %d, lineage %d) is synced but not a prefix of primary %s (last %d, lineage %d) at %d",
				n.name, st.Role, st.Last, st.Lineage, p.name, ps.Last, ps.Lineage, k)
		}
	}
	return nil
}

// finalCheck runs after the quiet steps: the primary committed everything
// it has, every live node became a member and applied it, and no client
// still waits.
func (w *world) finalCheck() error {
	p := w.by[w.m.cfg.Members[0]]
	st := p.core.Status()
	if !p.alive || st.Role != pb.RolePrimary || st.Epoch != w.m.cfg.Epoch {
		return violation("liveness: primary %s alive %t, %s in epoch %d, master in %d", p.name, p.alive, st.Role, st.Epoch, w.m.cfg.Epoch)
	}
	if st.Commit != st.Last || st.Applied != st.Last {
		return violation("liveness: primary %s has last %d, applied %d, commit %d after %d quiet steps", p.name, st.Last, st.Applied, st.Commit, quietSteps)
	}
	for _, n := range w.nodes {
		if !n.alive {
			continue
		}
		if !slices.Contains(w.m.cfg.Members, n.name) {
			return violation("liveness: %s is alive but not a member after %d quiet steps (joining %q)", n.name, quietSteps, w.m.cfg.Joining)
		}
		if n.applied != st.Last {
			return violation("liveness: %s applied %d of %d", n.name, n.applied, st.Last)
		}
	}
	for _, c := range w.cl {
		if c.busy {
			return violation("liveness: client %d still waits for seq %d at %s", c.id, c.seq, c.node.name)
		}
	}
	return nil
}
