package sim

import (
	"cmp"
	"runtime"
	"slices"
	"sync"
)

// SeedFailure is a seed whose run failed, with the error it returned.
type SeedFailure struct {
	Seed uint64
	Err  error
}

// RunSeeds calls run for count seeds from first on, on workers goroutines
// (GOMAXPROCS if workers <= 0), and returns the failures ordered by seed.
// After the first failure no new seed is started, so a broken protocol
// fails fast, and the runs already under way finish. run must not share
// mutable state between seeds except behind its own lock: each seed is
// one world, driven by one goroutine, so its run stays deterministic.
func RunSeeds(first uint64, count, workers int, run func(seed uint64) error) []SeedFailure {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var (
		mu     sync.Mutex
		next   = first
		end    = first + uint64(max(count, 0))
		failed []SeedFailure
		wg     sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for {
				mu.Lock()
				seed, stop := next, next >= end || len(failed) > 0
				next++
				mu.Unlock()
				if stop {
					return
				}
				if err := run(seed); err != nil {
					mu.Lock()
					failed = append(failed, SeedFailure{Seed: seed, Err: err})
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	slices.SortFunc(failed, func(a, b SeedFailure) int { return cmp.Compare(a.Seed, b.Seed) })
	return failed
}
