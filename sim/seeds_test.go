package sim

import (
	"errors"
	"sync/atomic"
	"testing"
)

// TestRunSeeds checks that every seed runs once when all pass, and that
// failures come back ordered by seed and stop new seeds from starting.
func TestRunSeeds(t *testing.T) {
	var ran [100]atomic.Int32
	if f := RunSeeds(5, 95, 3, func(seed uint64) error { ran[seed].Add(1); return nil }); len(f) != 0 {
		t.Fatalf("failures %v from passing seeds", f)
	}
	for s := range ran {
		if want := int32(0); s >= 5 {
			want = 1
			if ran[s].Load() != want {
				t.Fatalf("seed %d ran %d times", s, ran[s].Load())
			}
		} else if ran[s].Load() != want {
			t.Fatalf("seed %d outside the range ran", s)
		}
	}
	// One worker: seeds 1, 2 and 3 run, and nothing after the failure.
	var runs atomic.Int32
	bad := errors.New("bad")
	f := RunSeeds(1, 1000, 1, func(seed uint64) error {
		runs.Add(1)
		if seed == 3 {
			return bad
		}
		return nil
	})
	if len(f) != 1 || f[0].Seed != 3 || !errors.Is(f[0].Err, bad) || runs.Load() != 3 {
		t.Fatalf("failures %v after %d runs, want seed 3 after 3 runs", f, runs.Load())
	}
	// Every seed fails: each worker starts at most one, and the failures
	// come back in seed order.
	runs.Store(0)
	f = RunSeeds(10, 1000, 4, func(uint64) error { runs.Add(1); return bad })
	if len(f) == 0 || int32(len(f)) != runs.Load() || runs.Load() > 4 {
		t.Fatalf("%d failures after %d runs with 4 workers", len(f), runs.Load())
	}
	for i := 1; i < len(f); i++ {
		if f[i].Seed <= f[i-1].Seed {
			t.Fatalf("failures out of order: %v", f)
		}
	}
}

func TestAgenda(t *testing.T) {
	var a Agenda[string]
	a.Add(5, "b")
	a.Add(3, "a")
	a.Add(5, "c")
	a.Add(9, "drop")
	a.Add(7, "d")
	if got := a.Due(2); got != nil {
		t.Fatalf("due at 2: %v", got)
	}
	if n := a.Drop(func(s string) bool { return s == "drop" }); n != 1 || a.Len() != 4 {
		t.Fatalf("dropped %d, %d left", n, a.Len())
	}
	if got := a.Due(5); len(got) != 3 || got[0] != "a" || got[1] != "b" || got[2] != "c" {
		t.Fatalf("due at 5: %v, want a b c", got)
	}
	if got := a.Due(100); len(got) != 1 || got[0] != "d" || a.Len() != 0 {
		t.Fatalf("due at 100: %v, %d left", got, a.Len())
	}
}

func TestCounters(t *testing.T) {
	var a, b Counters
	a.Inc("x")
	a.Add("y", 2)
	b.Inc("z")
	b.Add("x", 4)
	a.Merge(&b)
	if a.Get("x") != 5 || a.Get("y") != 2 || a.Get("z") != 1 || a.Get("w") != 0 {
		t.Fatalf("counts %s", &a)
	}
	if s := a.String(); s != "x 5, y 2, z 1" {
		t.Fatalf("summary %q", s)
	}
	if m := a.Missing("y", "w", "x", "v"); len(m) != 2 || m[0] != "w" || m[1] != "v" {
		t.Fatalf("missing %v", m)
	}
}
