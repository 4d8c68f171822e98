package sim

import (
	"fmt"
	"hash/fnv"
	"io"
)

// Trace records what a simulation did, for two uses: a digest of every
// event, so a test can show that the same seed gives the same run, and the
// last Keep events, to print when a seed fails. A nil *Trace records
// nothing and costs nothing beyond the call, so fast runs pass nil and a
// failing seed is replayed with a real one.
type Trace struct {
	// Keep is how many recent events to keep for Dump (default 200).
	Keep int
	// Echo, if set, receives every event as it happens (verbose replay).
	Echo io.Writer

	step   int64
	digest uint64
	ring   []string
	next   int
	count  int
}

// Enabled reports whether t records anything; callers can skip building
// expensive arguments when it does not.
func (t *Trace) Enabled() bool { return t != nil }

// SetStep sets the step number that prefixes the following events.
func (t *Trace) SetStep(step int64) {
	if t != nil {
		t.step = step
	}
}

// Logf records one event.
func (t *Trace) Logf(format string, args ...any) {
	if t == nil {
		return
	}
	line := fmt.Sprintf("%6d ", t.step) + fmt.Sprintf(format, args...)
	h := fnv.New64a()
	var prev [8]byte
	for i := range prev {
		prev[i] = byte(t.digest >> (8 * i))
	}
	h.Write(prev[:])
	io.WriteString(h, line)
	t.digest = h.Sum64()
	if t.Echo != nil {
		fmt.Fprintln(t.Echo, line)
	}
	keep := t.Keep
	if keep <= 0 {
		keep = 200
	}
	if len(t.ring) < keep {
		t.ring = append(t.ring, line)
	} else {
		t.ring[t.next] = line
		t.next = (t.next + 1) % keep
	}
	t.count++
}

// Digest identifies the sequence of events recorded so far.
func (t *Trace) Digest() uint64 {
	if t == nil {
		return 0
	}
	return t.digest
}

// Count is the number of events recorded.
func (t *Trace) Count() int {
	if t == nil {
		return 0
	}
	return t.count
}

// Dump writes the kept events, oldest first.
func (t *Trace) Dump(w io.Writer) {
	if t == nil {
		return
	}
	for i := range t.ring {
		fmt.Fprintln(w, t.ring[(t.next+i)%len(t.ring)])
	}
}
