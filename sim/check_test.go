package sim

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckLinearizable(t *testing.T) {
	var h History
	put := h.Invoke(0, KVInput{Op: KVPut, Key: "k", Value: "x"})
	h.Return(put, nil)
	if err := CheckLinearizable(&h, 0, ""); err != nil {
		t.Fatalf("a legal history: %v", err)
	}
	get := h.Invoke(1, KVInput{Op: KVGet, Key: "k"})
	h.Return(get, KVOutput{Value: "stale"})
	path := filepath.Join(t.TempDir(), "viz.html")
	err := CheckLinearizable(&h, 0, path)
	if !errors.Is(err, ErrNotLinearizable) || !strings.Contains(err.Error(), path) {
		t.Fatalf("an illegal history: %v", err)
	}
	if st, err := os.Stat(path); err != nil || st.Size() == 0 {
		t.Fatalf("no visualization written: %v", err)
	}
}

func TestReplays(t *testing.T) {
	steady := func(seed uint64, tr *Trace) error {
		for i := range 10 {
			tr.Logf("seed %d event %d", seed, i)
		}
		return nil
	}
	if err := Replays(7, 10, steady); err != nil {
		t.Fatalf("a deterministic run: %v", err)
	}
	if err := Replays(7, 11, steady); !errors.Is(err, ErrNotReplayable) {
		t.Fatalf("a run with too few events: %v", err)
	}
	calls := 0
	drifting := func(seed uint64, tr *Trace) error {
		calls++
		tr.Logf("call %d", calls)
		return nil
	}
	if err := Replays(7, 1, drifting); !errors.Is(err, ErrNotReplayable) {
		t.Fatalf("a run that differs the second time: %v", err)
	}
	bad := Violation("x is %d", 3)
	if err := Replays(7, 1, func(uint64, *Trace) error { return bad }); !errors.Is(err, ErrInvariant) {
		t.Fatalf("a failing run: %v", err)
	}
	tail := TraceTail(2, func(tr *Trace) { _ = steady(1, tr) })
	if strings.Count(tail, "\n") != 3 || !strings.Contains(tail, "event 9") || strings.Contains(tail, "event 7") {
		t.Fatalf("tail %q", tail)
	}
}
