package sim

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Errors a simulation reports, so that a test can tell a broken protocol
// from a history too concurrent to check.
var (
	// ErrInvariant wraps every invariant a simulation finds violated.
	ErrInvariant = errors.New("invariant violated")
	// ErrNotLinearizable: porcupine found the clients' history illegal.
	ErrNotLinearizable = errors.New("history not linearizable")
	// ErrInconclusive: porcupine ran out of time; not a protocol failure.
	ErrInconclusive = errors.New("linearizability check inconclusive")
	// ErrNotReplayable: the same seed gave two different runs, so a
	// failing seed could not be replayed.
	ErrNotReplayable = errors.New("seed does not replay")
)

// Violation returns an error wrapping ErrInvariant.
func Violation(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvariant, fmt.Sprintf(format, args...))
}

// CheckLinearizable checks h against KVModel within timeout. When the
// history is illegal it writes porcupine's visualization to htmlPath (if
// not empty) and names the file in the error, which wraps
// ErrNotLinearizable; a check out of time wraps ErrInconclusive.
func CheckLinearizable(h *History, timeout time.Duration, htmlPath string) error {
	res, info := CheckKV(h, timeout)
	switch res {
	case porcupine.Ok:
		return nil
	case porcupine.Unknown:
		return fmt.Errorf("%w: %d operations in %v", ErrInconclusive, h.Len(), timeout)
	}
	where := "no visualization"
	if htmlPath != "" {
		where = "see " + htmlPath
		if err := porcupine.VisualizePath(KVModel(), info, htmlPath); err != nil {
			where = err.Error()
		}
	}
	return fmt.Errorf("%w: %d operations (%s)", ErrNotLinearizable, h.Len(), where)
}

// Replays runs one seed twice, each with a fresh Trace, and fails unless
// both runs recorded the same events (by digest and count) and at least
// minEvents of them: a seed that does not replay cannot be debugged.
func Replays(seed uint64, minEvents int, run func(seed uint64, tr *Trace) error) error {
	var digest [2]uint64
	var count [2]int
	for i := range digest {
		tr := &Trace{Keep: 1}
		if err := run(seed, tr); err != nil {
			return fmt.Errorf("seed %d: %w", seed, err)
		}
		digest[i], count[i] = tr.Digest(), tr.Count()
	}
	if digest[0] != digest[1] || count[0] != count[1] || count[0] < minEvents {
		return fmt.Errorf("%w: seed %d gave %d events (%x), then %d (%x)", ErrNotReplayable, seed, count[0], digest[0], count[1], digest[1])
	}
	return nil
}

// TraceTail runs a seed again with a trace and returns its last keep
// events, to print under a failure.
func TraceTail(keep int, run func(tr *Trace)) string {
	tr := &Trace{Keep: keep}
	run(tr)
	var b strings.Builder
	b.WriteString("last events:\n")
	tr.Dump(&b)
	return b.String()
}
