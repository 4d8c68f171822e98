package sim

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// SeedFlags are the command-line flags of a simulator's TestSim, the same
// in every package so that one replay command shape serves them all.
type SeedFlags struct {
	Seed  *uint64 // -seed: run only this seed, tracing every event with -v
	Seeds *int    // -seeds: how many seeds to run (0: the default)
	Steps *int    // -steps: faulty steps per seed
	First *uint64 // -firstseed: the first of the -seeds seeds
}

// RegisterSeedFlags defines -seed, -seeds, -steps (steps by default) and
// -firstseed on fs, usually flag.CommandLine from a package-level var of
// a test file.
func RegisterSeedFlags(fs *flag.FlagSet, steps int) SeedFlags {
	return SeedFlags{
		Seed:  fs.Uint64("seed", 0, "TestSim: run only this seed, tracing every event with -v"),
		Seeds: fs.Int("seeds", 0, "TestSim: how many seeds to run (default 300, 40 with -short)"),
		Steps: fs.Int("steps", steps, "TestSim: faulty steps per seed"),
		First: fs.Uint64("firstseed", 1, "TestSim: the first of the -seeds seeds"),
	}
}

// Tally is how often the seeds of a TestSim did one thing, named for a
// coverage report.
type Tally struct {
	What string
	N    int
}

// SeedTest is the driver of a simulator's TestSim, generic over the
// statistics S that one seed's run returns: it runs the seeds the flags
// ask for on every CPU, tells inconclusive linearizability checks from
// failures, prints each failure with the tail of its trace and the command
// that replays it, and checks that the seeds exercised every fault.
type SeedTest[S any] struct {
	Flags   SeedFlags
	Package string // the package path for the replay command: "./protocol/chain"
	Quiet   int    // the fault-free steps after the faulty ones, for the summary
	Short   bool   // testing.Short(): 40 seeds by default instead of 300
	Verbose bool   // testing.Verbose(): a -seed replay echoes every event
	// Run simulates one seed for steps faulty steps (then the quiet ones),
	// recording events in tr if not nil.
	Run func(seed uint64, steps int, tr *Trace) (S, error)
	// Merge adds one seed's statistics to a total.
	Merge func(total *S, one S)
	// Coverage names what the seeds must all together exercise, with how
	// often they did; checked on runs of at least 100 seeds x 1000 steps.
	Coverage func(total S) []Tally
}

// Main is the body of TestSim: one traced seed with -seed, else a batch.
func (st *SeedTest[S]) Main(t TB) {
	t.Helper()
	if *st.Flags.Seed != 0 {
		st.replayOne(t, *st.Flags.Seed)
		return
	}
	seeds := *st.Flags.Seeds
	if seeds == 0 {
		seeds = 300
		if st.Short {
			seeds = 40
		}
	}
	steps := *st.Flags.Steps
	start := time.Now()
	total, inconclusive, failures := st.batch(t, *st.Flags.First, seeds, steps)
	t.Logf("%d seeds x %d+%d steps in %v: %v; inconclusive %d", seeds, steps, st.Quiet, time.Since(start).Round(time.Millisecond), total, inconclusive)
	for _, f := range failures {
		tail := TraceTail(60, func(tr *Trace) { st.Run(f.Seed, steps, tr) })
		t.Errorf("seed %d: %v\n%s\n%s", f.Seed, f.Err, tail, st.replay(f.Seed, steps))
	}
	if len(failures) > 0 {
		return
	}
	if seeds >= 100 && steps >= 1000 {
		for _, c := range st.Coverage(total) {
			if c.N == 0 {
				t.Errorf("no %s in any seed", c.What)
			}
		}
	}
	if *st.Flags.Seeds == 0 && *st.Flags.First == 1 && inconclusive > 0 {
		t.Errorf("%d default seeds were too concurrent for porcupine to check", inconclusive)
	}
}

// replayOne runs one seed with every event traced, echoed with -v.
func (st *SeedTest[S]) replayOne(t TB, seed uint64) {
	t.Helper()
	tr := &Trace{}
	if st.Verbose {
		tr.Echo = os.Stdout
	}
	stats, err := st.Run(seed, *st.Flags.Steps, tr)
	t.Logf("seed %d: %v", seed, stats)
	if err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
}

// batch runs seeds from first on with RunSeeds, merging their statistics.
// A seed whose history was too concurrent to check (ErrInconclusive) is
// logged with its replay command and counted, not failed.
func (st *SeedTest[S]) batch(t TB, first uint64, seeds, steps int) (S, int, []SeedFailure) {
	var (
		mu           sync.Mutex
		total        S
		inconclusive int
	)
	failures := RunSeeds(first, seeds, 0, func(seed uint64) error {
		stats, err := st.Run(seed, steps, nil)
		mu.Lock()
		defer mu.Unlock()
		st.Merge(&total, stats)
		if errors.Is(err, ErrInconclusive) {
			inconclusive++
			t.Logf("seed %d: %v (not a failure); %s", seed, err, st.replay(seed, steps))
			return nil
		}
		return err
	})
	return total, inconclusive, failures
}

func (st *SeedTest[S]) replay(seed uint64, steps int) string {
	return fmt.Sprintf("replay: go test %s -run 'TestSim$' -seed %d -steps %d -v", st.Package, seed, steps)
}

// Deterministic checks that each of seeds gives the same run twice, of at
// least minEvents events, or a failing seed could not be replayed.
func (st *SeedTest[S]) Deterministic(t TB, steps, minEvents int, seeds ...uint64) {
	t.Helper()
	for _, seed := range seeds {
		err := Replays(seed, minEvents, func(seed uint64, tr *Trace) error {
			_, err := st.Run(seed, steps, tr)
			return err
		})
		if err != nil {
			t.Errorf("%v", err)
		}
	}
}

// VisualizationPath is where a simulator of protocol name writes
// porcupine's picture of seed's history when it is not linearizable.
func VisualizationPath(name string, seed uint64) string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("lockstep-%s-sim-%d.html", name, seed))
}
