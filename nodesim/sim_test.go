package nodesim

import (
	"errors"
	"flag"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/sim"
)

var (
	flagSeed  = flag.Uint64("seed", 0, "TestSim: run only this seed, tracing every event with -v")
	flagSeeds = flag.Int("seeds", 0, "TestSim: how many seeds per protocol (default 100, 25 with -short)")
	flagSteps = flag.Int("steps", 3000, "TestSim: faulty milliseconds per seed")
	flagFirst = flag.Uint64("firstseed", 1, "TestSim: the first seed")
)

var protocols = []string{coord.ProtocolChain, coord.ProtocolPrimaryBackup, coord.ProtocolCheckpoint}

// TestSim runs whole nodes under seeded faults for each protocol and
// checks every history for linearizability, the group for liveness once
// the faults heal, and the replicas for identical states.
func TestSim(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) { runProtocol(t, proto) })
	}
}

func runProtocol(t *testing.T, proto string) {
	run := func(seed uint64, tr *sim.Trace) (Stats, error) {
		return NewWorld(seed, DefaultParams(proto), tr).Run(*flagSteps)
	}
	if *flagSeed != 0 {
		tr := &sim.Trace{}
		if testing.Verbose() {
			tr.Echo = os.Stdout
		}
		st, err := run(*flagSeed, tr)
		t.Logf("seed %d: %d steps, %v", *flagSeed, st.Steps, &st.Counters)
		if err != nil {
			t.Fatalf("seed %d: %v\n%s", *flagSeed, err, replay(proto, *flagSeed))
		}
		return
	}
	seeds := *flagSeeds
	if seeds == 0 {
		seeds = 100
		if testing.Short() {
			seeds = 25
		}
	}
	var (
		mu    sync.Mutex
		total Stats
	)
	start := time.Now()
	failures := sim.RunSeeds(*flagFirst, seeds, 0, func(seed uint64) error {
		st, err := run(seed, nil)
		mu.Lock()
		total.Merge(st)
		mu.Unlock()
		if errors.Is(err, sim.ErrInconclusive) {
			t.Logf("seed %d: %v (not a failure); %s", seed, err, replay(proto, seed))
			return nil
		}
		return err
	})
	t.Logf("%s: %d seeds, %d simulated steps in %v: %v", proto, seeds, total.Steps, time.Since(start).Round(time.Millisecond), &total.Counters)
	for _, f := range failures {
		tail := sim.TraceTail(80, func(tr *sim.Trace) { _, _ = run(f.Seed, tr) })
		t.Errorf("seed %d: %v\n%s\n%s", f.Seed, f.Err, tail, replay(proto, f.Seed))
	}
	if len(failures) == 0 && seeds >= 100 && *flagSteps >= 1000 {
		for _, c := range coverage(proto, total) {
			if c.N == 0 {
				t.Errorf("%s: no %s in any seed", proto, c.What)
			}
		}
	}
}

// coverage lists what the seeds of one protocol must exercise together,
// as the cores' simulators check (sim.SeedTest): a simulator whose faults
// never fire checks nothing. It is checked on runs of at least 100 seeds
// of 1000 steps, where every fault is expected; the default seeds replay
// exactly, so the check cannot flake.
func coverage(proto string, s Stats) []sim.Tally {
	names := []string{
		"crash", "pause", "cut from its peers", "cut from the coordinator", "cut from peers and coordinator",
		"coordinator outage", "total outage", "second process under a name", "slow node",
		"graceful stop", "msg dropped", "msg reset", "reply lost", "fsync failed",
		"snapshot served", "snapshot transfer broken", "recovered from disks", "write", "read",
	}
	if proto != coord.ProtocolCheckpoint {
		// A chain or primary-backup node stopped gracefully keeps its
		// committed state and rejoins on it, from the retained log of the
		// tail or primary, or by snapshot.
		names = append(names, "clean stop recorded", "restart on clean state",
			"clean restart member from the log", "clean restart member by snapshot")
	}
	tallies := make([]sim.Tally, len(names))
	for i, name := range names {
		tallies[i] = sim.Tally{What: name, N: s.Get(name)}
	}
	return tallies
}

func replay(proto string, seed uint64) string {
	return "replay: go test ./nodesim -run 'TestSim/" + proto + "$' -seed " + itoa(seed) + " -steps " + itoa(uint64(*flagSteps)) + " -v"
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }

// TestSimDeterministic: a seed gives the same run twice, event for event,
// or a failing seed could not be replayed.
func TestSimDeterministic(t *testing.T) {
	for _, proto := range protocols {
		for _, seed := range []uint64{1, 2, 3} {
			err := sim.Replays(seed, 100, func(seed uint64, tr *sim.Trace) error {
				_, err := NewWorld(seed, DefaultParams(proto), tr).Run(3000)
				return err
			})
			if err != nil {
				t.Errorf("%s: %v", proto, err)
			}
		}
	}
}

// TestIncompleteBackupNotPromoted runs IncompleteBackupScenario: with
// every complete member dead, the only backup left lags the commit point,
// so the group must not serve from it: it stays down, or re-forms from the
// dead members' disks once they are back (Run checks that nothing
// acknowledged is lost either way).
func TestIncompleteBackupNotPromoted(t *testing.T) {
	for _, proto := range []string{coord.ProtocolPrimaryBackup, coord.ProtocolCheckpoint} {
		for seed := uint64(1); seed <= 8; seed++ {
			st, err := NewWorld(seed, IncompleteBackupScenario(proto), nil).Run(5000)
			if err != nil {
				tail := sim.TraceTail(60, func(tr *sim.Trace) { _, _ = NewWorld(seed, IncompleteBackupScenario(proto), tr).Run(5000) })
				t.Fatalf("%s seed %d: %v\n%s\nreplay: go test ./nodesim -run 'TestIncompleteBackupNotPromoted$' -v (the seeds run in order)", proto, seed, err, tail)
			}
			if st.Get("scenario struck") != 1 {
				t.Fatalf("%s seed %d: the scenario did not play out (%v)", proto, seed, &st.Counters)
			}
			if st.Get("group lost") != 1 && st.Get("recovered from disks") == 0 {
				t.Fatalf("%s seed %d: with every complete member dead, the group served again from a backup that lagged the commit point (%v)",
					proto, seed, &st.Counters)
			}
		}
	}
}
