package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Errors a migration ends with, wrapped with %w.
var (
	// errMigrateSource: the source Redis could not be read; nothing after
	// the failure was copied.
	errMigrateSource = errors.New("lockstep: cannot read the source Redis")
	// errMigrateTarget: writes to lockstep kept failing, without progress,
	// through every retry.
	errMigrateTarget = errors.New("lockstep: cannot write to lockstep")
	// errMigrateIncomplete: the migration ran to the end but left keys out
	// (unsupported types, conflicts, refused writes).
	errMigrateIncomplete = errors.New("lockstep: migration incomplete")
	// errMigrateInterrupted: Ctrl-C or SIGTERM stopped the migration.
	errMigrateInterrupted = errors.New("lockstep: migration interrupted")
)

// migrateOptions are the validated settings a migrator runs with.
type migrateOptions struct {
	match   string // SCAN MATCH pattern
	batch   int    // SCAN COUNT, and the most keys per read or write pipeline
	replace bool   // overwrite keys lockstep already holds
	retries int    // resends in a row without progress before giving up
	// backoff is the first pause after an attempt without progress; it
	// doubles with each further one, up to 20 times itself.
	backoff time.Duration
}

// migrateEntry is one string key read from the source, ready to write.
type migrateEntry struct {
	key, value string
	expireAt   int64 // Unix milliseconds; 0 for no TTL
	// unsure marks an entry whose earlier write attempt failed in a way
	// that may have applied it, so finding its value in lockstep later
	// means this run copied it.
	unsure bool
}

// migrator copies keys from a Redis server (src) to lockstep (dst). One
// goroutine reads the source while another writes, so neither end waits
// for the other; both share only the tally.
type migrator struct {
	src, dst *redis.Client
	opts     migrateOptions
	tally    *migrateTally
	now      func() time.Time
	log      *slog.Logger
}

// run copies every key that matches, reading the next batch while the
// previous one is written. It returns errMigrateInterrupted when ctx ends
// and the first read or write error otherwise; what it did is in m.tally.
func (m *migrator) run(parent context.Context) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	batches := make(chan []migrateEntry, 2)
	readErr := make(chan error, 1)
	go func() {
		err := m.readAll(ctx, batches)
		close(batches)
		readErr <- err
	}()
	werr := m.writeAll(ctx, batches)
	cancel() // a failed writer stops the reader
	rerr := <-readErr
	switch {
	case parent.Err() != nil:
		return fmt.Errorf("%w: %w", errMigrateInterrupted, context.Cause(parent))
	case werr != nil:
		return werr
	}
	return rerr
}

// readAll scans the source and sends the string keys of each batch, read
// with their values and deadlines, to out.
func (m *migrator) readAll(ctx context.Context, out chan<- []migrateEntry) error {
	var cursor uint64
	for {
		keys, next, err := m.src.Scan(ctx, cursor, m.opts.match, int64(m.opts.batch)).Result()
		if err != nil {
			return fmt.Errorf("%w: SCAN: %w", errMigrateSource, err)
		}
		m.tally.update(func(c *migrateCounts) { c.Scanned += int64(len(keys)) })
		for chunk := range slices.Chunk(keys, m.opts.batch) {
			entries, err := m.readBatch(ctx, chunk)
			if err != nil {
				return err
			}
			if len(entries) == 0 {
				continue
			}
			select {
			case out <- entries:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// keyReads are the replies about one key in a read batch.
type keyReads struct {
	typ  *redis.StatusCmd
	val  *redis.StringCmd
	pttl *redis.Cmd
}

// readBatch reads TYPE, GET and PTTL of every key in one MULTI/EXEC, so a
// key's type, value and TTL are read at one instant even while the source
// serves writes. GET fails with WRONGTYPE on the keys that are not strings;
// their TYPE says what they are.
func (m *migrator) readBatch(ctx context.Context, keys []string) ([]migrateEntry, error) {
	reads := make([]keyReads, len(keys))
	sentAt := m.now()
	_, err := m.src.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			reads[i] = keyReads{typ: p.Type(ctx, k), val: p.Get(ctx, k), pttl: p.Do(ctx, "pttl", k)}
		}
		return nil
	})
	var rerr redis.Error
	if err != nil && !errors.As(err, &rerr) {
		return nil, fmt.Errorf("%w: %w", errMigrateSource, err)
	}
	entries := make([]migrateEntry, 0, len(keys))
	var gone int64
	other := map[string][]string{}
	for i, k := range keys {
		e, typ, err := readEntry(k, reads[i], sentAt)
		switch {
		case err != nil:
			return nil, err
		case typ == "string":
			entries = append(entries, e)
		case typ == "none":
			gone++
		default:
			other[typ] = append(other[typ], k)
		}
	}
	m.tally.update(func(c *migrateCounts) { countSkipped(c, gone, other) })
	return entries, nil
}

// readEntry interprets one key's replies. typ is "string" for a key to
// copy, "none" for one that expired or was deleted since SCAN returned it,
// and the key's type otherwise.
func readEntry(key string, r keyReads, sentAt time.Time) (e migrateEntry, typ string, err error) {
	if typ, err = r.typ.Result(); err != nil {
		return e, "", fmt.Errorf("%w: TYPE %q: %w", errMigrateSource, key, err)
	}
	if typ != "string" {
		return e, typ, nil
	}
	val, err := r.val.Result()
	if errors.Is(err, redis.Nil) {
		return e, "none", nil
	}
	if err != nil {
		return e, "", fmt.Errorf("%w: GET %q: %w", errMigrateSource, key, err)
	}
	pttl, err := r.pttl.Int64()
	if err != nil {
		return e, "", fmt.Errorf("%w: PTTL %q: %w", errMigrateSource, key, err)
	}
	at, gone := expireAtMillis(sentAt, pttl)
	if gone {
		return e, "none", nil
	}
	return migrateEntry{key: key, value: val, expireAt: at}, "string", nil
}

// countSkipped adds a read batch's vanished and unsupported keys to c.
func countSkipped(c *migrateCounts, gone int64, other map[string][]string) {
	c.Expired += gone
	for typ, keys := range other {
		if c.Unsupported == nil {
			c.Unsupported = map[string]int64{}
		}
		c.Unsupported[typ] += int64(len(keys))
		for _, k := range keys {
			c.UnsupportedKeys = sample(c.UnsupportedKeys, fmt.Sprintf("%s (%s)", k, typ))
		}
	}
}

// writeAll writes the batches from in until it is closed.
func (m *migrator) writeAll(ctx context.Context, in <-chan []migrateEntry) error {
	for batch := range in {
		if err := m.writeBatch(ctx, batch); err != nil {
			return err
		}
	}
	return nil
}

// writeBatch writes entries to lockstep. Writes that fail for a reason
// that may pass are sent again: at once while each attempt makes progress,
// after a growing pause while none does. After opts.retries attempts in a
// row without progress it gives up, so a lockstep that stays unreachable
// stops the migration with an error instead of stalling it or, worse,
// letting it report success with keys missing.
func (m *migrator) writeBatch(ctx context.Context, entries []migrateEntry) error {
	pending := m.dropExpired(entries)
	for stalled := 0; len(pending) > 0; {
		retry, lastErr := m.writeOnce(ctx, pending)
		if err := ctx.Err(); err != nil {
			return err
		}
		if len(retry) < len(pending) {
			stalled = 0
		} else {
			stalled++
		}
		if len(retry) > 0 && stalled > m.opts.retries {
			return fmt.Errorf("%w: %d writes still failing after %d attempts without progress: %w",
				errMigrateTarget, len(retry), stalled, lastErr)
		}
		if len(retry) > 0 {
			m.log.Warn("retrying writes", "keys", len(retry), "err", lastErr)
			if err := pause(ctx, writeBackoff(m.opts.backoff, stalled)); err != nil {
				return err
			}
		}
		pending = m.dropExpired(retry)
	}
	return nil
}

// dropExpired counts and leaves out the entries whose deadline has passed:
// writing them would only create keys that are already expired.
func (m *migrator) dropExpired(entries []migrateEntry) []migrateEntry {
	now := m.now().UnixMilli()
	live := make([]migrateEntry, 0, len(entries))
	for _, e := range entries {
		if e.expireAt == 0 || e.expireAt > now {
			live = append(live, e)
		}
	}
	if n := int64(len(entries) - len(live)); n > 0 {
		m.tally.update(func(c *migrateCounts) { c.Expired += n })
	}
	return live
}

// writeOnce sends entries in one pipeline of SETs and sorts the replies.
// It returns the entries to send again, and the last error that made one
// of them need it.
func (m *migrator) writeOnce(ctx context.Context, entries []migrateEntry) ([]migrateEntry, error) {
	cmds := make([]*redis.Cmd, len(entries))
	// Exec's error is the first command's; each command's own is read below.
	_, _ = m.dst.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, e := range entries {
			cmds[i] = p.Do(ctx, setArgs(e, m.opts.replace)...)
		}
		return nil
	})
	var retry, present []migrateEntry
	var lastErr error
	var copied int64
	var refused []string
	for i, e := range entries {
		switch err := cmds[i].Err(); {
		case err == nil:
			copied++
		case errors.Is(err, redis.Nil): // SET NX: the key exists
			present = append(present, e)
		case retryableWrite(err):
			e.unsure = e.unsure || mayHaveApplied(err)
			retry, lastErr = append(retry, e), err
		default:
			refused = append(refused, fmt.Sprintf("%s: %v", e.key, err))
		}
	}
	m.tally.update(func(c *migrateCounts) {
		c.Copied += copied
		c.Failed += int64(len(refused))
		for _, r := range refused {
			c.FailedKeys = sample(c.FailedKeys, r)
		}
	})
	again, err := m.resolvePresent(ctx, present)
	if err != nil {
		lastErr = err
	}
	return append(retry, again...), lastErr
}

// setArgs is the SET that copies e: with PXAT for a key with a TTL, so
// the deadline is absolute however long the write takes, and with NX
// unless the copy may replace what lockstep holds.
func setArgs(e migrateEntry, replace bool) []any {
	args := []any{"set", e.key, e.value}
	if e.expireAt != 0 {
		args = append(args, "pxat", strconv.FormatInt(e.expireAt, 10))
	}
	if !replace {
		args = append(args, "nx")
	}
	return args
}

// resolvePresent sorts the keys SET NX found in lockstep by reading them
// back. One holding the value being copied was already there, or was
// copied by an earlier attempt of this run whose reply was lost (unsure);
// one holding another value is a conflict, left alone. A key that is gone
// again (it expired in lockstep meanwhile), or whose read failed, is
// returned to be written again.
func (m *migrator) resolvePresent(ctx context.Context, present []migrateEntry) ([]migrateEntry, error) {
	if len(present) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.StringCmd, len(present))
	_, _ = m.dst.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, e := range present {
			cmds[i] = p.Get(ctx, e.key)
		}
		return nil
	})
	var again []migrateEntry
	var lastErr error
	var copied, same int64
	var conflicts []string
	for i, e := range present {
		switch v, err := cmds[i].Result(); {
		case err == nil && v == e.value && e.unsure:
			copied++
		case err == nil && v == e.value:
			same++
		case err == nil:
			conflicts = append(conflicts, e.key)
		default: // redis.Nil: gone again; or the read failed
			again = append(again, e)
			if !errors.Is(err, redis.Nil) {
				lastErr = err
			}
		}
	}
	m.tally.update(func(c *migrateCounts) {
		c.Copied += copied
		c.Same += same
		c.Conflicts += int64(len(conflicts))
		for _, k := range conflicts {
			c.ConflictKeys = sample(c.ConflictKeys, k)
		}
	})
	return again, lastErr
}

// writeBackoff is the pause before the next attempt after stalled attempts
// in a row made no progress: none while writes progress, then base
// doubling up to 20 times base (100ms to 2s in the command, long enough
// for a cluster to replace a failed node).
func writeBackoff(base time.Duration, stalled int) time.Duration {
	if stalled <= 0 {
		return 0
	}
	return min(base<<min(stalled-1, 5), 20*base)
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
