package sim

import (
	"math/rand/v2"
	"slices"
)

// LinkFaults injects the network faults of a simulation into a Network:
// a reset of one link, or a cut of one link or of one node from all the
// others, healed after a random while. Every choice comes from Rng in a
// fixed order, so a seed replays exactly; events go to Trace (nil: none).
//
// LinkFaults is not safe for concurrent use; a simulation is one
// goroutine.
type LinkFaults[M any] struct {
	Net   *Network[M]
	Rng   *rand.Rand
	Trace *Trace
	cuts  []timedCut // ordered by the step they heal at
}

type timedCut struct {
	at   int64
	a, b string
}

// HealDue heals the cuts due at step now.
func (f *LinkFaults[M]) HealDue(now int64) {
	for len(f.cuts) > 0 && f.cuts[0].at <= now {
		f.Net.Heal(f.cuts[0].a, f.cuts[0].b)
		f.Trace.Logf("heal %s-%s", f.cuts[0].a, f.cuts[0].b)
		f.cuts = f.cuts[1:]
	}
}

// HealAll heals every cut now, as the quiet steps at the end of a run
// begin.
func (f *LinkFaults[M]) HealAll() {
	f.Net.HealAll()
	f.cuts = nil
}

// ResetOne resets the link between two random nodes of names: what is in
// flight on it, both ways, is lost.
func (f *LinkFaults[M]) ResetOne(names []string) {
	a, b := f.pair(names)
	f.Trace.Logf("reset %s-%s: %d lost", a, b, f.Net.Reset(a, b))
}

// CutSome cuts, until a random step 5 to 64 steps after now, either the
// link between two random nodes of names (two times in three) or every
// link of one random node, and returns how many links it cut.
func (f *LinkFaults[M]) CutSome(now int64, names []string) int {
	at := now + 5 + int64(f.Rng.IntN(60))
	if f.Rng.IntN(3) > 0 {
		a, b := f.pair(names)
		f.cut(a, b, at)
		return 1
	}
	x := names[f.Rng.IntN(len(names))]
	k := 0
	for _, n := range names {
		if n != x {
			f.cut(x, n, at)
			k++
		}
	}
	return k
}

// cut partitions a from b until step at. A cut joins those due at the
// same step ahead of them.
func (f *LinkFaults[M]) cut(a, b string, at int64) {
	f.Net.Cut(a, b)
	i, _ := slices.BinarySearchFunc(f.cuts, at, func(c timedCut, t int64) int { return int(c.at - t) })
	f.cuts = slices.Insert(f.cuts, i, timedCut{at: at, a: a, b: b})
	f.Trace.Logf("cut %s-%s until %d", a, b, at)
}

// pair picks two different nodes of names.
func (f *LinkFaults[M]) pair(names []string) (string, string) {
	i := f.Rng.IntN(len(names))
	j := (i + 1 + f.Rng.IntN(len(names)-1)) % len(names)
	return names[i], names[j]
}
