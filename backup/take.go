package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// TakeOptions configure Take.
type TakeOptions struct {
	// Addr is any node of the source cluster; it relays the stream from
	// the node whose state is committed.
	Addr     string
	Password string
	// Out is the backup file's path. It is replaced only by a complete,
	// synced backup.
	Out string
	// Progress receives a line per Interval (default 1s); nil for none.
	Progress io.Writer
	Interval time.Duration
	// Now is the clock (nil: time.Now), for the file's creation time and
	// the rates.
	Now func() time.Time
}

// TakeResult describes a backup Take wrote.
type TakeResult struct {
	Path     string
	Header   Header
	Size     int64 // the file's bytes
	Received int64 // the stream's bytes
	Elapsed  time.Duration
}

// Take streams a backup from the node at o.Addr into the file o.Out.
//
// The file appears under its name only once it is complete and on disk:
// the records go to a temporary file beside it, which is synced, renamed
// over o.Out, and its directory synced. On any failure the temporary file
// is removed and o.Out is left as it was, so a half-written backup never
// carries the name of a good one. Before the rename, the stream's end
// must agree with what arrived: the node's count and data digest of its
// snapshot against the records the file holds.
func Take(ctx context.Context, o TakeOptions) (TakeResult, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	start := o.Now()
	c, sr, err := openStream(ctx, o)
	if err != nil {
		return TakeResult{}, fmt.Errorf("backup from %s: %w", o.Addr, err)
	}
	defer c.close()
	sh := sr.Header()
	h := Header{Seq: sh.Seq, Created: start, Cluster: sh.Cluster, Group: sh.Group, Protocol: sh.Protocol}
	p := newProgress(o.Progress, "backup", sh.Keys, o.Interval, o.Now)
	h, size, err := writeFile(o.Out, h, func(w *Writer) error { return copyStream(sr, w, p, &c.read) })
	if err != nil {
		return TakeResult{}, fmt.Errorf("backup from %s: %w", o.Addr, err)
	}
	return TakeResult{Path: o.Out, Header: h, Size: size, Received: c.read, Elapsed: o.Now().Sub(start)}, nil
}

// tryAgainBudget bounds how long Take keeps asking a node that answers
// TRYAGAIN: a failover takes a few lease TTLs at most.
const tryAgainBudget = 30 * time.Second

// openStream asks the node for a backup and reads the stream's header,
// asking again while the node answers TRYAGAIN.
func openStream(ctx context.Context, o TakeOptions) (*conn, *StreamReader, error) {
	deadline := o.Now().Add(tryAgainBudget)
	for attempt := 1; ; attempt++ {
		c, err := dial(ctx, o.Addr, o.Password)
		if err != nil {
			return nil, nil, err
		}
		if err = c.send(Command); err != nil {
			c.close()
			return nil, nil, fmt.Errorf("%w: %w", ErrConnect, err)
		}
		sr, err := newStreamReader(c.rd)
		if err == nil {
			return c, sr, nil
		}
		c.close()
		if !errors.Is(err, ErrTryAgain) || o.Now().After(deadline) {
			return nil, nil, err
		}
		if err := sleep(ctx, min(time.Duration(attempt)*100*time.Millisecond, time.Second)); err != nil {
			return nil, nil, err
		}
	}
}

// copyStream writes every record of the stream to w, reporting progress.
func copyStream(sr *StreamReader, w *Writer, p *progress, received *int64) error {
	var keys int64
	for {
		rec, err := sr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := w.Add(rec); err != nil {
			return err
		}
		keys++
		p.update(*received, keys)
	}
}

// writeFile writes a backup to a temporary file beside path with fill,
// finishes it, syncs it and renames it to path; see Take.
func writeFile(path string, h Header, fill func(*Writer) error) (Header, int64, error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return Header{}, 0, fmt.Errorf("lockstep: create backup file: %w", err)
	}
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	w, err := NewWriter(tmp, h)
	if err != nil {
		return Header{}, 0, err
	}
	if err := fill(w); err != nil {
		return Header{}, 0, err
	}
	if h, err = w.Close(); err != nil {
		return Header{}, 0, err
	}
	if err := tmp.Sync(); err != nil {
		return Header{}, 0, fmt.Errorf("lockstep: sync backup file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return Header{}, 0, fmt.Errorf("lockstep: close backup file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return Header{}, 0, fmt.Errorf("lockstep: name backup file: %w", err)
	}
	done = true
	if err := syncDir(dir); err != nil {
		return Header{}, 0, err
	}
	return h, int64(len(h.encode())) + int64(h.BodyBytes), nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("lockstep: sync backup directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("lockstep: sync backup directory: %w", err)
	}
	return nil
}
