// Package cutcheck is test support for backups: writers that each set
// their own keys in turn to increasing numbers, and a check that a copy of
// the data (a backup, or a cluster restored from one) is one cut of their
// histories. For every writer the copy must hold exactly a prefix of its
// writes, the prefix must include every write acknowledged before the copy
// began, and no write started after the copy ended. A copy stitched
// together from different moments, or missing an acknowledged write, fails.
//
// It does not import package testing: it reports errors for the test to
// judge.
package cutcheck

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"
)

// ErrNotACut: the copy is not one cut of a writer's history.
var ErrNotACut = errors.New("lockstep: copy is not a consistent cut")

// Writer sets keys Key(ID, 0..Keys-1) in turn to 0, 1, 2, ...: write i
// sets key i%Keys to i. It has one write outstanding at a time, and
// repeats a failed write until it is acknowledged, so write i is applied
// before write i+1 is sent.
type Writer struct {
	ID, Keys int
	acked    atomic.Int64 // the last write acknowledged, -1 for none
	started  atomic.Int64 // the last write sent, -1 for none
}

// NewWriter returns writer id over keys keys.
func NewWriter(id, keys int) *Writer {
	w := &Writer{ID: id, Keys: keys}
	w.acked.Store(-1)
	w.started.Store(-1)
	return w
}

// Key is the name of writer id's key j.
func Key(id, j int) string { return fmt.Sprintf("w%d:%04d", id, j) }

// Run writes with set until ctx ends. set returns nil once the write is
// acknowledged.
func (w *Writer) Run(ctx context.Context, set func(ctx context.Context, key, value string) error) {
	for i := int64(0); ctx.Err() == nil; i++ {
		w.started.Store(i)
		key, value := Key(w.ID, int(i)%w.Keys), strconv.FormatInt(i, 10)
		for set(ctx, key, value) != nil {
			if ctx.Err() != nil {
				return
			}
			t := time.NewTimer(10 * time.Millisecond)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
		w.acked.Store(i)
	}
}

// Acked is the last write acknowledged, -1 for none.
func (w *Writer) Acked() int64 { return w.acked.Load() }

// Started is the last write sent, -1 for none.
func (w *Writer) Started() int64 { return w.started.Load() }

// Check reports whether data holds a cut of w's writes that includes
// write lo (the last acknowledged before the copy began) and nothing after
// write hi (the last started before it ended), and returns the last write
// it holds.
func (w *Writer) Check(data map[string]string, lo, hi int64) (int64, error) {
	last := int64(-1)
	for j := range w.Keys {
		if v, ok := data[Key(w.ID, j)]; ok {
			i, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%w: %s=%q", ErrNotACut, Key(w.ID, j), v)
			}
			last = max(last, i)
		}
	}
	if last < lo || last > hi {
		return last, fmt.Errorf("%w: writer %d's last write in the copy is %d, want %d to %d", ErrNotACut, w.ID, last, lo, hi)
	}
	for j := range w.Keys {
		// The newest write to key j at or before last.
		want := last - (last-int64(j)+int64(w.Keys))%int64(w.Keys)
		v, ok := data[Key(w.ID, j)]
		switch {
		case want < 0 && ok:
			return last, fmt.Errorf("%w: %s=%s, but writer %d's last write is %d", ErrNotACut, Key(w.ID, j), v, w.ID, last)
		case want >= 0 && v != strconv.FormatInt(want, 10):
			return last, fmt.Errorf("%w: %s=%q (present %v), want %d, writer %d's last write being %d",
				ErrNotACut, Key(w.ID, j), v, ok, want, w.ID, last)
		}
	}
	return last, nil
}
