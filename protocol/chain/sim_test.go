package chain_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/lockstep/lockstep/protocol/chain"
	"github.com/lockstep/lockstep/sim"
)

var (
	flagSeed  = flag.Uint64("seed", 0, "TestSim: run only this seed, tracing every event with -v")
	flagSeeds = flag.Int("seeds", 0, "TestSim: how many seeds to run (default 300, 40 with -short)")
	flagSteps = flag.Int("steps", 2000, "TestSim: faulty steps per seed")
	flagFirst = flag.Uint64("firstseed", 1, "TestSim: the first of the -seeds seeds")
)

// quietSteps follow the faulty ones: no faults, no new operations, so every
// write whose head survived must complete and every replica converge.
const quietSteps = 600

// TestSim runs the chain core through seeded crashes, reconfigurations,
// snapshots, link resets and partitions, checks the invariants after every
// step and the clients' history with porcupine at the end. A failure prints
// the seed and the command that replays it.
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
					t.Logf("seed %d: %v (inconclusive, not a failure); replay: go test ./protocol/chain -run 'TestSim$' -seed %d -steps %d -v",
						seed, err, seed, steps)
					err = nil
				}
				if err != nil && !failed {
					failed = true
					t.Errorf("seed %d: %v\n%s\nreplay: go test ./protocol/chain -run 'TestSim$' -seed %d -steps %d -v",
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
		{"head crashes", s.crashes[chain.RoleHead]},
		{"middle crashes", s.crashes[chain.RoleMiddle]},
		{"tail crashes", s.crashes[chain.RoleTail]},
		{"joiner crashes", s.crashes[chain.RoleJoining]},
		{"promotions", s.promotions},
		{"snapshots", s.snapshots},
		{"link resets", s.resets},
		{"cuts", s.cuts},
		{"full windows", s.windowFull},
		{"stale messages", s.stale},
		{"reads", s.reads},
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
	path := filepath.Join(os.TempDir(), fmt.Sprintf("lockstep-chain-sim-%d.html", seed))
	if err := porcupine.VisualizePath(sim.KVModel(), info, path); err != nil {
		path = err.Error()
	}
	return w.stats, fmt.Errorf("history of %d operations is not linearizable (see %s)", w.hist.Len(), path)
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
