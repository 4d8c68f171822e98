package sim

import (
	"flag"
	"fmt"
	"strings"
	"testing"
)

// fakeTB records what a driver reports.
type fakeTB struct {
	logs, errs []string
	fatal      bool
}

func (f *fakeTB) Helper()                        {}
func (f *fakeTB) Logf(format string, a ...any)   { f.logs = append(f.logs, fmt.Sprintf(format, a...)) }
func (f *fakeTB) Errorf(format string, a ...any) { f.errs = append(f.errs, fmt.Sprintf(format, a...)) }
func (f *fakeTB) Fatalf(format string, a ...any) {
	f.Errorf(format, a...)
	f.fatal = true
}

// TestSeedTest checks that the driver runs the seeds the flags ask for,
// reports a failing seed with its trace and replay command, lets an
// inconclusive seed pass a non-default run, and checks coverage.
func TestSeedTest(t *testing.T) {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	flags := RegisterSeedFlags(fs, 1000)
	if err := fs.Parse([]string{"-seeds", "120", "-firstseed", "3"}); err != nil {
		t.Fatal(err)
	}
	st := &SeedTest[int]{
		Flags:   flags,
		Package: "./x",
		Run: func(seed uint64, _ int, tr *Trace) (int, error) {
			tr.Logf("seed %d ran", seed)
			switch seed {
			case 7:
				return 1, ErrInconclusive
			case 50:
				return 1, Violation("seed %d is bad", seed)
			}
			return 1, nil
		},
		Merge:    func(total *int, one int) { *total += one },
		Coverage: func(total int) []Tally { return []Tally{{What: "seeds", N: total}, {What: "nothing", N: 0}} },
	}
	var tb fakeTB
	st.Main(&tb)
	all := strings.Join(tb.errs, "\n")
	if len(tb.errs) != 1 || !strings.Contains(all, "seed 50 is bad") || !strings.Contains(all, "seed 50 ran") ||
		!strings.Contains(all, "go test ./x -run 'TestSim$' -seed 50 -steps 1000 -v") {
		t.Fatalf("a failing seed reported as %q", tb.errs)
	}
	if !strings.Contains(strings.Join(tb.logs, "\n"), "seed 7: linearizability check inconclusive (not a failure)") {
		t.Fatalf("no inconclusive seed in the logs %q", tb.logs)
	}

	st.Run = func(uint64, int, *Trace) (int, error) { return 1, nil }
	tb = fakeTB{}
	st.Main(&tb)
	if len(tb.errs) != 1 || tb.errs[0] != "no nothing in any seed" || !strings.Contains(tb.logs[0], "120 seeds x 1000+0 steps") {
		t.Fatalf("a passing run with a coverage gap: errors %q, logs %q", tb.errs, tb.logs)
	}

	if err := fs.Parse([]string{"-seed", "9"}); err != nil {
		t.Fatal(err)
	}
	st.Run = func(seed uint64, _ int, tr *Trace) (int, error) {
		if !tr.Enabled() {
			return 0, fmt.Errorf("seed %d replayed without a trace", seed)
		}
		return 0, Violation("seed %d", seed)
	}
	tb = fakeTB{}
	st.Main(&tb)
	if !tb.fatal || !strings.Contains(tb.errs[0], "seed 9") {
		t.Fatalf("a replayed failing seed: %q", tb.errs)
	}
}
