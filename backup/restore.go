package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Errors of a restore, wrapped with %w.
var (
	// ErrNotEmpty: the target cluster holds keys and Force was not set.
	ErrNotEmpty = errors.New("lockstep: restore target is not empty")
	// ErrLoad: the target refused a write of the restore.
	ErrLoad = errors.New("lockstep: restore write refused")
	// ErrVerify: after loading, the target's data digest differs from
	// the backup's.
	ErrVerify = errors.New("lockstep: restored data differs from the backup")
)

// RestoreOptions configure Restore.
type RestoreOptions struct {
	// In is the backup file.
	In string
	// Addr is any node of the target cluster.
	Addr     string
	Password string
	// Force loads into a target that already holds keys: the backup's
	// keys overwrite theirs, and other keys stay (so the verification
	// then fails unless the backup holds them all).
	Force bool
	// Conns is how many connections load in parallel (default 8).
	Conns int
	// Progress receives a line per Interval (default 1s); nil for none.
	Progress io.Writer
	Interval time.Duration
	// Now is the clock (nil: time.Now) that decides which keys have
	// expired.
	Now func() time.Time
}

// RestoreResult describes a finished restore.
type RestoreResult struct {
	Header Header
	// Loaded keys were written; Expired keys had expired by the time
	// their turn came and were skipped.
	Loaded, Expired int64
	// The verification: the records alive after AliveAfter (Unix ms),
	// Compared of them, have digest Digest on both sides. Recorded means
	// no record was left out, so Digest is the backup's recorded digest.
	AliveAfter int64
	Compared   int64
	Digest     string
	Recorded   bool
	Elapsed    time.Duration
}

// verifyMargin is how far past the verification's clock a record must
// live to be compared. The target deletes keys as they expire, by its own
// clock, and the digest is computed a moment after the cut-off is chosen;
// a key that expires within the margin might be gone on the target while
// the file still counts it. It is loaded all the same.
const verifyMargin = 5 * time.Second

// Restore seeds the cluster at o.Addr from the backup o.In. It checks the
// whole file first (checksums, count, digest) and refuses a target that
// holds keys unless o.Force; it then loads every record that has not
// expired, with its absolute expiry, over parallel pipelined connections
// (writes are idempotent, so a batch cut off by a failover is sent
// again); finally it compares the data digest of the target's committed
// state with the file's, over the records alive past the cut-off.
func Restore(ctx context.Context, o RestoreOptions) (RestoreResult, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Conns <= 0 {
		o.Conns = 8
	}
	start := o.Now()
	f, err := os.Open(o.In)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("lockstep: open backup: %w", err)
	}
	defer f.Close()
	h, soonest, err := checkFile(f, o)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("%s: %w", o.In, err)
	}
	if err := checkEmpty(ctx, o); err != nil {
		return RestoreResult{}, err
	}
	res := RestoreResult{Header: h}
	if res.Loaded, res.Expired, err = load(ctx, f, h, o); err != nil {
		return res, err
	}
	res.AliveAfter = o.Now().Add(verifyMargin).UnixMilli()
	err = verify(ctx, o, f, h, soonest, &res)
	res.Elapsed = o.Now().Sub(start)
	return res, err
}

// checkFile reads the whole file and checks it, and returns its header and
// its soonest expiry (0 if no record expires).
func checkFile(f *os.File, o RestoreOptions) (Header, int64, error) {
	rd, err := NewReader(f)
	if err != nil {
		return Header{}, 0, err
	}
	p := newProgress(o.Progress, "check", int64(rd.Header().Keys), o.Interval, o.Now)
	var soonest, keys int64
	for {
		rec, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return rd.Header(), soonest, nil
		}
		if err != nil {
			return Header{}, 0, err
		}
		if rec.ExpireAt != 0 && (soonest == 0 || rec.ExpireAt < soonest) {
			soonest = rec.ExpireAt
		}
		keys++
		p.update(int64(rd.body), keys)
	}
}

// checkEmpty refuses a target that holds keys, unless o.Force.
func checkEmpty(ctx context.Context, o RestoreOptions) error {
	c, err := dial(ctx, o.Addr, o.Password)
	if err != nil {
		return err
	}
	defer c.close()
	v, err := c.do("DBSIZE")
	switch {
	case err != nil:
		return fmt.Errorf("%w: DBSIZE: %w", ErrConnect, err)
	case v.Type != ':':
		return fmt.Errorf("%w: DBSIZE answered %s", ErrConnect, v)
	case v.Int > 0 && !o.Force:
		return fmt.Errorf("%w: it holds %d keys (--force loads over them)", ErrNotEmpty, v.Int)
	}
	return nil
}

// load writes the file's records that have not expired to the target and
// counts those written and those skipped.
func load(ctx context.Context, f *os.File, h Header, o RestoreOptions) (loaded, expired int64, err error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, 0, fmt.Errorf("lockstep: read backup: %w", err)
	}
	rd, err := NewReader(f)
	if err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		done    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	batches := make(chan *batch, o.Conns)
	for range o.Conns {
		wg.Go(func() {
			if err := loadWorker(ctx, o, batches, &done); err != nil {
				errOnce.Do(func() { first = err })
				cancel()
			}
		})
	}
	expired, err = produce(ctx, rd, o, batches, &done, newProgress(o.Progress, "restore", int64(h.Keys), o.Interval, o.Now))
	close(batches)
	wg.Wait()
	if first != nil {
		return done.Load(), expired, first
	}
	return done.Load(), expired, err
}

// produce reads the records into batches of commands for the workers and
// counts the records that have expired by now.
func produce(ctx context.Context, rd *Reader, o RestoreOptions, out chan<- *batch, done *atomic.Int64, p *progress) (int64, error) {
	var expired int64
	b := &batch{}
	send := func() error {
		b.flushMSet()
		select {
		case out <- b:
			b = &batch{}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for {
		rec, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return expired, err
		}
		if rec.ExpireAt != 0 && rec.ExpireAt <= o.Now().UnixMilli() {
			expired++
			continue
		}
		if b.add(rec) {
			if err := send(); err != nil {
				return expired, err
			}
		}
		p.update(int64(rd.body), done.Load()+expired)
	}
	if b.keys > 0 {
		return expired, send()
	}
	return expired, nil
}
