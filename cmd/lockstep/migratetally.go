package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// migrateSamples is how many example keys the summary names per kind of
// problem: enough to find them, few enough to read.
const migrateSamples = 5

// migrateCounts is what a migration did with the keys it saw. It is a plain
// value so that the progress line, the summary and the exit status are
// computed from one consistent copy.
type migrateCounts struct {
	Scanned int64 // keys SCAN returned (a key SCAN returns twice counts twice)
	Copied  int64 // strings written to lockstep
	// Same counts strings lockstep already held with the same value (no
	// --replace). A key found holding it only after a write of this run
	// lost its reply counts as Copied: this run may have written it.
	Same      int64
	Conflicts int64 // strings lockstep held with another value, left alone (no --replace)
	Expired   int64 // keys gone or expired between SCAN and the write
	Failed    int64 // writes lockstep refused with a permanent error
	// Unsupported counts the keys of types lockstep cannot store, by type.
	Unsupported map[string]int64
	// The first few keys of each problem, for the summary.
	UnsupportedKeys, ConflictKeys, FailedKeys []string
}

// unsupported is the total of Unsupported.
func (c migrateCounts) unsupported() int64 {
	var n int64
	for _, v := range c.Unsupported {
		n += v
	}
	return n
}

// typeList renders Unsupported as "hash 3, list 1", types in name order so
// the line is the same from run to run.
func (c migrateCounts) typeList() string {
	parts := make([]string, 0, len(c.Unsupported))
	for _, typ := range slices.Sorted(maps.Keys(c.Unsupported)) {
		parts = append(parts, fmt.Sprintf("%s %d", typ, c.Unsupported[typ]))
	}
	return strings.Join(parts, ", ")
}

// migrateTally is the counts shared by the reader, the writer and the
// progress printer. Every access goes through its lock; the counts are
// bumped once per batch, so the lock is cheap.
type migrateTally struct {
	mu sync.Mutex
	c  migrateCounts
}

// update runs fn on the counts under the lock.
func (t *migrateTally) update(fn func(c *migrateCounts)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fn(&t.c)
}

// snapshot returns a copy of the counts that later updates do not change.
func (t *migrateTally) snapshot() migrateCounts {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.c
	c.Unsupported = maps.Clone(t.c.Unsupported)
	c.UnsupportedKeys = slices.Clone(t.c.UnsupportedKeys)
	c.ConflictKeys = slices.Clone(t.c.ConflictKeys)
	c.FailedKeys = slices.Clone(t.c.FailedKeys)
	return c
}

// sample appends s to list unless it already holds migrateSamples names.
func sample(list []string, s string) []string {
	if len(list) >= migrateSamples {
		return list
	}
	return append(list, s)
}

// expireAtMillis turns a PTTL reply into the absolute deadline (Unix
// milliseconds) lockstep should expire the key at. sentAt is when the read
// was sent: the source measured the PTTL at some instant after it, so
// counting from sentAt can shorten a TTL by one round trip but never
// lengthen it. gone reports a key that no longer exists (PTTL -2); at is 0
// for a key without a TTL (-1).
func expireAtMillis(sentAt time.Time, pttl int64) (at int64, gone bool) {
	switch {
	case pttl == -2:
		return 0, true
	case pttl < 0:
		return 0, false
	}
	return sentAt.UnixMilli() + pttl, false
}

// retryableWrite reports whether a failed write may succeed if sent again:
// the connection failed or timed out (the write may or may not have run),
// or lockstep answered with an error that means "not now" (TRYAGAIN while
// the chain reconfigures, the runtime's own "ERR lockstep: ..." states such
// as a replica not serving or a full replication window, LOADING). Other
// error replies (a value over the server's size limit, NOAUTH) will be
// refused again and are reported at once.
func retryableWrite(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) {
		return false
	}
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return true // no reply: connection lost, timeout, pool exhausted
	}
	msg := rerr.Error()
	for _, p := range []string{"TRYAGAIN ", "LOADING ", "BUSY ", "CLUSTERDOWN ", "MASTERDOWN ", "ERR lockstep: "} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// mayHaveApplied reports whether a write that failed with err may still
// have run: its reply was lost (no reply at all), or lockstep said it cannot
// know (a reconfiguration cut the write off). An error reply such as
// TRYAGAIN means the write did not run.
func mayHaveApplied(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return err != nil
	}
	return strings.Contains(rerr.Error(), "outcome unknown")
}

// migrateOutcome names how a migration ended, for the summary line. Only
// "complete" means that every key it was asked to copy is in lockstep.
func migrateOutcome(c migrateCounts, skipUnsupported bool, runErr error) string {
	switch {
	case errors.Is(runErr, errMigrateInterrupted):
		return "interrupted"
	case runErr != nil:
		return "stopped by an error"
	case len(incompleteReasons(c, skipUnsupported)) > 0:
		return "incomplete"
	}
	return "complete"
}

// writeMigrateSummary prints the one-line summary of a migration.
func writeMigrateSummary(w io.Writer, c migrateCounts, outcome string, elapsed time.Duration) error {
	unsupported := fmt.Sprintf("%d unsupported", c.unsupported())
	if len(c.Unsupported) > 0 {
		unsupported += " (" + c.typeList() + ")"
	}
	_, err := fmt.Fprintf(w, "migrate %s in %.1fs: %d keys scanned, %d copied, %d already present, %d conflicts, %d expired, %s, %d failed\n",
		outcome, elapsed.Seconds(), c.Scanned, c.Copied, c.Same, c.Conflicts, c.Expired, unsupported, c.Failed)
	return err
}

// incompleteReasons explains, one sentence each, why a migration that ran
// to the end still left source keys out of lockstep; none means it is
// complete. Unsupported types count only without --skip-unsupported.
func incompleteReasons(c migrateCounts, skipUnsupported bool) []string {
	var why []string
	if n := c.unsupported(); n > 0 && !skipUnsupported {
		why = append(why, fmt.Sprintf("%d keys of types lockstep cannot store yet were not copied (%s; first: %s); lockstep stores strings only, rerun with --skip-unsupported to leave them behind",
			n, c.typeList(), strings.Join(c.UnsupportedKeys, ", ")))
	}
	if c.Conflicts > 0 {
		why = append(why, fmt.Sprintf("%d keys already hold a different value in lockstep and were left as they are (first: %s); rerun with --replace to overwrite them",
			c.Conflicts, strings.Join(c.ConflictKeys, ", ")))
	}
	if c.Failed > 0 {
		why = append(why, fmt.Sprintf("%d writes were refused by lockstep (first: %s)", c.Failed, strings.Join(c.FailedKeys, "; ")))
	}
	return why
}

// progressLine is the line printed to stderr once a second: totals so far
// and the scan rate since the previous line.
func progressLine(c migrateCounts, prevScanned int64, interval time.Duration) string {
	rate := 0.0
	if interval > 0 {
		rate = float64(c.Scanned-prevScanned) / interval.Seconds()
	}
	return fmt.Sprintf("migrate: %d scanned, %d copied, %d already present, %d conflicts, %d expired, %d unsupported, %d failed, %.0f keys/s",
		c.Scanned, c.Copied, c.Same, c.Conflicts, c.Expired, c.unsupported(), c.Failed, rate)
}

// reportProgress prints a progress line every interval until done closes.
func reportProgress(w io.Writer, t *migrateTally, interval time.Duration, done <-chan struct{}) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var prev int64
	last := time.Now()
	for {
		select {
		case <-done:
			return
		case now := <-tick.C:
			c := t.snapshot()
			fmt.Fprintln(w, progressLine(c, prev, now.Sub(last)))
			prev, last = c.Scanned, now
		}
	}
}
