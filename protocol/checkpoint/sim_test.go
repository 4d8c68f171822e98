package checkpoint_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockstep/lockstep/protocol/checkpoint"
	"github.com/lockstep/lockstep/sim"
)

var (
	flagSeed  = flag.Uint64("seed", 0, "TestSim: run only this seed, tracing every event with -v")
	flagSeeds = flag.Int("seeds", 0, "TestSim: how many seeds to run (default 300, 40 with -short, or $LOCKSTEP_SIM_SEEDS)")
	flagSteps = flag.Int("steps", 1500, "TestSim: faulty steps per seed")
	flagFirst = flag.Uint64("firstseed", 1, "TestSim: the first of the -seeds seeds")
)

// quietSteps follow the faulty ones: no faults, no new operations, so every
// write whose primary survived must commit and every replica converge.
const quietSteps = 500

// TestSim runs the checkpoint core through seeded crashes (of the primary
// at every point of a checkpoint, among others), failovers, joins with
// snapshots taken inside open epochs, link resets and partitions; it
// checks the invariants after every step and the clients' history with
// porcupine at the end. A failure prints the seed and the command that
// replays it. LOCKSTEP_SIM_SEEDS=20000 makes a long run.
func TestSim(t *testing.T) {
	if *flagSeed != 0 {
		replayOne(t, *flagSeed)
		return
	}
	seeds := simSeeds()
	var (
		mu    sync.Mutex
		total sim.Counters
	)
	start := time.Now()
	failures := sim.RunSeeds(*flagFirst, seeds, 0, func(seed uint64) error {
		count, err := runSeed(seed, *flagSteps, nil)
		mu.Lock()
		total.Merge(&count)
		mu.Unlock()
		return err
	})
	t.Logf("%d seeds x %d+%d steps in %v: %s", seeds, *flagSteps, quietSteps, time.Since(start).Round(time.Millisecond), &total)
	for _, f := range failures {
		tail := sim.TraceTail(60, func(tr *sim.Trace) { runSeed(f.Seed, *flagSteps, tr) })
		t.Errorf("seed %d: %v\n%s\nreplay: go test ./protocol/checkpoint -run 'TestSim$' -seed %d -steps %d -v",
			f.Seed, f.Err, tail, f.Seed, *flagSteps)
	}
	if len(failures) == 0 && seeds >= 100 && *flagSteps >= 1000 {
		if missing := total.Missing(coverage...); len(missing) > 0 {
			t.Errorf("no seed exercised: %s", strings.Join(missing, "; "))
		}
	}
}

// replayOne runs one seed with every event traced, and printed with -v.
func replayOne(t *testing.T, seed uint64) {
	tr := &sim.Trace{}
	if testing.Verbose() {
		tr.Echo = os.Stdout
	}
	count, err := runSeed(seed, *flagSteps, tr)
	t.Logf("seed %d: %s", seed, &count)
	if err != nil {
		t.Fatal(err)
	}
}

// simSeeds is how many seeds TestSim runs: -seeds, else
// $LOCKSTEP_SIM_SEEDS, else 300 (40 with -short).
func simSeeds() int {
	if *flagSeeds > 0 {
		return *flagSeeds
	}
	if n, err := strconv.Atoi(os.Getenv("LOCKSTEP_SIM_SEEDS")); err == nil && n > 0 {
		return n
	}
	if testing.Short() {
		return 40
	}
	return 300
}

// coverage lists what the default seeds must exercise: a simulator whose
// faults never fire checks nothing.
var coverage = []string{
	"primary crashes before the send", "primary crashes between chunks", "primary crashes after the send",
	"primary crashes as an ack arrives", "primary crashes after an ack", "primary crashes after the commit",
	"crashes of a primary", "crashes of a backup", "crashes of a joining", "suspicions of a primary",
	"restarts", "failovers", "joiners made backups", "snapshots installed by a joining",
	"snapshots installed by a backup", "states sent back by a snapshot", "snapshots inside an open epoch",
	"checkpoints in several chunks", "full windows", "link resets", "cuts", "stale messages",
	"reads", "writes released", "given-up writes that took effect", "given-up writes lost",
}

// porcupineTimeout bounds the check of one seed's history; it takes a few
// milliseconds.
const porcupineTimeout = 10 * time.Second

// runSeed simulates one seed and checks its history for linearizability.
func runSeed(seed uint64, steps int, trace *sim.Trace) (sim.Counters, error) {
	w := newWorld(seed, trace)
	if err := w.run(steps, quietSteps); err != nil {
		return w.count, err
	}
	html := filepath.Join(os.TempDir(), fmt.Sprintf("lockstep-checkpoint-sim-%d.html", seed))
	return w.count, sim.CheckLinearizable(&w.hist, porcupineTimeout, html)
}

// TestSimDeterministic checks that a seed gives the same run twice, or a
// failing seed could not be replayed.
func TestSimDeterministic(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		err := sim.Replays(seed, 100, func(seed uint64, tr *sim.Trace) error {
			_, err := runSeed(seed, 400, tr)
			return err
		})
		if err != nil {
			t.Error(err)
		}
	}
}

// TestSimCatchesLoss checks that the simulator's oracle is not blind: a
// runtime that installs a checkpoint missing its last record must fail
// invariant 1.
func TestSimCatchesLoss(t *testing.T) {
	w := newWorld(1, nil)
	n := w.nodes[1]
	w.states[stateKey{"p#0", 5}] = kvHash("k0", "a") + kvHash("k1", "b")
	n.pending = []checkpoint.Checkpoint{{Seq: 5, Data: []byte("p#0\nk0=a\n")}}
	if err := w.install(n, 1); !errors.Is(err, sim.ErrInvariant) {
		t.Fatalf("installing a truncated checkpoint: %v, want an invariant violation", err)
	}
}

// check verifies the invariants that hold between steps: runtime and
// core agree; every replica that is not primary is exactly at a state
// some primary had at a checkpoint or snapshot (invariant 1); and the
// master's primary, once it may serve, holds every released write
// (invariant 2, checked once per epoch, and at every release).
func (w *world) check() error {
	for _, n := range w.nodes {
		if !n.alive {
			continue
		}
		st := n.core.Detail()
		if st.Role == checkpoint.RolePrimary {
			if st.Applied > n.seq {
				return violation("%s: core applied %d, store at %d", n.id, st.Applied, n.seq)
			}
			continue
		}
		if st.Applied != n.seq {
			return violation("%s (%s): core applied %d, store at %d", n.id, st.Role, st.Applied, n.seq)
		}
		if want, ok := w.states[n.at]; n.digest != want || (!ok && n.at != stateKey{}) {
			return violation("%s (%s) at seq %d is not at the state of %s at %d", n.id, st.Role, n.seq, n.at.origin, n.at.seq)
		}
	}
	p := w.node(w.cfg.Members[0])
	if p.alive && p.core.ReadReady() && p.office != p.cfg.Epoch {
		p.office = p.cfg.Epoch
		return w.holdsReleased(p, w.released...)
	}
	return nil
}

// finish checks liveness after the quiet steps (the primary committed
// everything, every live node is a member at its state, no client waits)
// and settles the writes whose clients gave up: one the final state holds
// took effect; one it lacks never did, and no read can have seen it,
// since a read is released only once all it saw is committed.
func (w *world) finish() error {
	p := w.node(w.cfg.Members[0])
	if !p.alive || !p.core.ReadReady() || p.cfg.Epoch != w.cfg.Epoch {
		return violation("liveness: primary %s alive %t, status %+v, master in epoch %d", p.id, p.alive, p.core.Detail(), w.cfg.Epoch)
	}
	if p.commit != p.seq {
		return violation("liveness: primary %s at seq %d has committed %d", p.id, p.seq, p.commit)
	}
	for _, n := range w.nodes {
		if n.alive && (n.seq != p.seq || n.digest != p.digest || !w.inConfig(n.name) || w.cfg.Joining == n.name) {
			return violation("liveness: %s at seq %d (member %t, joining %q, same state %t), primary %s at %d", n.id, n.seq, w.inConfig(n.name), w.cfg.Joining, n.digest == p.digest, p.id, p.seq)
		}
	}
	for _, c := range w.cl {
		if c.busy {
			return violation("liveness: client %d still waits for seq %d at %s", c.id, c.write.seq, c.node.id)
		}
	}
	if err := w.holdsReleased(p, w.released...); err != nil {
		return err
	}
	for _, g := range w.givenUp {
		if strings.Contains(p.kv[g.key], g.token) {
			w.hist.Return(g.op, nil)
			w.count.Inc("given-up writes that took effect")
		} else {
			w.hist.Forget(g.op)
			w.count.Inc("given-up writes lost")
		}
	}
	return nil
}
