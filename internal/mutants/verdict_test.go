package mutants

import (
	"errors"
	"strings"
	"testing"
)

func TestApply(t *testing.T) {
	m := Mutant{Name: "m", File: "f.go", Old: "a < b", New: "a <= b"}
	got, err := Apply(m, "if a < b {\n}")
	if err != nil || got != "if a <= b {\n}" {
		t.Errorf("Apply = %q, %v", got, err)
	}
	for _, src := range []string{"if a > b {}", "a < b; a < b"} {
		if _, err := Apply(m, src); !errors.Is(err, ErrStale) {
			t.Errorf("Apply on %q: err = %v, want ErrStale", src, err)
		}
	}
}

func TestApplyMultiLine(t *testing.T) {
	m := Mutant{Old: "\tx()\n\ty()", New: "\ty()\n\tx()"}
	got, err := Apply(m, "func f() {\n\tx()\n\ty()\n}")
	if err != nil || got != "func f() {\n\ty()\n\tx()\n}" {
		t.Errorf("Apply = %q, %v", got, err)
	}
}

func TestJudge(t *testing.T) {
	for _, tc := range []struct {
		name   string
		out    string
		passed bool
		want   Verdict
	}{
		{"survived", "=== RUN   TestA\n--- PASS: TestA (0.00s)\n=== RUN   TestB\n--- SKIP: TestB (0.00s)\nok  \tgithub.com/x/p\t1.2s\n", true, Verdict{Status: Survived}},
		{"all skipped", "=== RUN   TestB\n    b_test.go:3: no redis-cli\n--- SKIP: TestB (0.00s)\nok  \tgithub.com/x/p\t1.2s\n", true,
			Verdict{Status: Stale, Test: "every test skipped: --- SKIP: TestB (0.00s)"}},
		{"no tests", "ok  \tgithub.com/x/p\t0.01s [no tests to run]\n", true,
			Verdict{Status: Stale, Test: "no test matches the -run pattern"}},
		{"subtest", "--- FAIL: TestSim (1.00s)\n    --- FAIL: TestSim/seed=7 (0.5s)\n        sim.go:1: replay: go test -run TestSim -seed 7\n    --- FAIL: TestSim/seed=9 (0.5s)\n--- FAIL: TestOther\nFAIL\n", false,
			Verdict{Status: Caught, Test: "TestSim/seed=7", Seed: "sim.go:1: replay: go test -run TestSim -seed 7"}},
		{"seed of the failing test", "=== RUN   TestA\n    a_test.go:1: seed 1\n--- PASS: TestA (0.00s)\n=== RUN   TestB\n    b_test.go:1: broke\n--- FAIL: TestB (0.00s)\n=== RUN   TestC\n    c_test.go:1: seed 3\n--- FAIL: TestC (0.00s)\nFAIL\n", false,
			Verdict{Status: Caught, Test: "TestB"}},
		{"seed of a failing subtest", "=== RUN   TestA\n=== RUN   TestA/x\n    a_test.go:1: seed 1\n--- FAIL: TestA (0.00s)\n    --- FAIL: TestA/x (0.00s)\nFAIL\n", false,
			Verdict{Status: Caught, Test: "TestA/x", Seed: "a_test.go:1: seed 1"}},
		{"seed and replay", "--- FAIL: TestSim (1.00s)\n    sim_test.go:24: seed 3: step 9: invariant violated\n    trace\n    replay: go test ./p -run 'TestSim$' -seed 3 -v\nFAIL\n", false,
			Verdict{Status: Caught, Test: "TestSim", Seed: "sim_test.go:24: seed 3: step 9: invariant violated", Replay: "replay: go test ./p -run 'TestSim$' -seed 3 -v"}},
		{"panic", "panic: runtime error: index out of range\n\ngoroutine 7 [running]:\nFAIL\tgithub.com/x/p\t0.1s\n", false,
			Verdict{Status: Caught, Test: "panic: runtime error: index out of range"}},
		{"timeout", "panic: test timed out after 1m0s\n\trunning tests:\n\t\tTestSlow (1m0s)\n\ngoroutine 1\n", false,
			Verdict{Status: Timeout, Test: "TestSlow"}},
		{"build", "# github.com/x/p\np/a.go:3:9: undefined: y\nFAIL\tgithub.com/x/p [build failed]\n", false,
			Verdict{Status: Broken, Test: "p/a.go:3:9: undefined: y"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Judge(tc.out, tc.passed); got != tc.want {
				t.Errorf("Judge = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestSelect(t *testing.T) {
	list := []Mutant{{Name: "chain-a"}, {Name: "pb-stale-epoch"}, {Name: "chain-stale-epoch"}}
	names := func(ms []Mutant) string {
		var s []string
		for _, m := range ms {
			s = append(s, m.Name)
		}
		return strings.Join(s, " ")
	}
	for _, tc := range []struct {
		pats []string
		want string
	}{
		{nil, "chain-a pb-stale-epoch chain-stale-epoch"},
		{[]string{"chain-"}, "chain-a chain-stale-epoch"},
		{[]string{"epoch$"}, "pb-stale-epoch chain-stale-epoch"},
		{[]string{"^pb", "chain-a"}, "chain-a pb-stale-epoch"},
	} {
		got, err := Select(list, tc.pats)
		if err != nil || names(got) != tc.want {
			t.Errorf("Select(%q) = %q, %v; want %q", tc.pats, names(got), err, tc.want)
		}
	}
	if _, err := Select(list, []string{"("}); err == nil {
		t.Error("Select with a bad pattern: no error")
	}
}

func TestReport(t *testing.T) {
	results := []Result{
		{Mutant: Mutant{Name: "a", Class: "x | y"}, Verdict: Verdict{Status: Caught, Test: "TestA"}},
		{Mutant: Mutant{Name: "b", Pending: true}, Verdict: Verdict{Status: Survived}},
	}
	if Failed(results) {
		t.Error("Failed: a pending survivor failed the run")
	}
	if Summary(results) != "1 CAUGHT, 1 SURVIVED" {
		t.Errorf("Summary = %q", Summary(results))
	}
	var b strings.Builder
	if err := WriteMarkdown(&b, results); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "| `a` | x \\| y | CAUGHT | `TestA` | 0 |") || !strings.Contains(b.String(), "SURVIVED (pending)") {
		t.Errorf("markdown:\n%s", b.String())
	}
	results[1].Pending = false
	if !Failed(results) {
		t.Error("Failed: a survivor did not fail the run")
	}
}
