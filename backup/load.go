package backup

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/lockstep/lockstep/resp"
)

// A batch is one pipeline of writes for a load worker. Records without an
// expiry go in MSETs, which lockstep orders and replicates as one update
// each, so a load through a node that forwards writes pays one round trip
// per MSET rather than per key; a record with an expiry needs its own
// SET ... PXAT, the absolute form, so the key expires when it would have
// on the source.
type batch struct {
	cmds      []byte
	n         int   // commands in cmds
	keys      int64 // records in cmds and mset
	mset      [][]byte
	msetBytes int
}

const (
	msetKeys      = 256
	msetMaxBytes  = 256 << 10
	batchCmds     = 64
	batchMaxBytes = 1 << 20
	// loadAttempts bounds how often one batch is sent: a failover of the
	// target may cut a connection or refuse a write for a moment.
	loadAttempts = 5
)

// add puts r in the batch and reports whether the batch is full.
func (b *batch) add(r Record) bool {
	b.keys++
	if r.ExpireAt == 0 {
		if len(b.mset) == 0 {
			b.mset = append(b.mset, []byte("MSET"))
		}
		b.mset = append(b.mset, r.Key, r.Value)
		b.msetBytes += len(r.Key) + len(r.Value)
		if len(b.mset) >= 1+2*msetKeys || b.msetBytes >= msetMaxBytes {
			b.flushMSet()
		}
	} else {
		b.cmds = resp.AppendCommand(b.cmds, []byte("SET"), r.Key, r.Value, []byte("PXAT"), strconv.AppendInt(nil, r.ExpireAt, 10))
		b.n++
	}
	return b.n >= batchCmds || len(b.cmds) >= batchMaxBytes
}

// flushMSet turns the MSET being collected into a command.
func (b *batch) flushMSet() {
	if len(b.mset) == 0 {
		return
	}
	b.cmds = resp.AppendCommand(b.cmds, b.mset...)
	b.n++
	b.mset, b.msetBytes = nil, 0
}

// loadWorker sends the batches it receives over a connection of its own,
// each again on a new connection after a failure: every write in it sets
// a key to the value and expiry it has in the backup, so sending it twice
// does no harm.
func loadWorker(ctx context.Context, o RestoreOptions, in <-chan *batch, done *atomic.Int64) error {
	var c *conn
	defer func() {
		if c != nil {
			c.close()
		}
	}()
	for b := range in {
		for attempt := 1; ; attempt++ {
			var err error
			if c == nil {
				c, err = dial(ctx, o.Addr, o.Password)
			}
			if err == nil {
				if err = c.pipeline(b); err == nil {
					break
				}
				c.close()
				c = nil
			}
			if ctx.Err() != nil || attempt == loadAttempts {
				return err
			}
			if err := sleep(ctx, time.Duration(attempt)*100*time.Millisecond); err != nil {
				return err
			}
		}
		done.Add(b.keys)
	}
	return nil
}

// pipeline sends a batch and reads every reply.
func (c *conn) pipeline(b *batch) error {
	if _, err := c.bw.Write(b.cmds); err != nil {
		return err
	}
	if err := c.bw.Flush(); err != nil {
		return err
	}
	for range b.n {
		v, err := c.rd.ReadValue()
		if err != nil {
			return err
		}
		if v.Type == '-' {
			return fmt.Errorf("%w: %s", ErrLoad, v.Str)
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// verify compares the target's data digest with the file's, over the
// records alive after res.AliveAfter, and fills in the result.
func verify(ctx context.Context, o RestoreOptions, f *os.File, h Header, soonest int64, res *RestoreResult) error {
	want, keys := h.Digest, int64(h.Keys)
	res.Recorded = soonest == 0 || soonest > res.AliveAfter
	if !res.Recorded {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("lockstep: read backup: %w", err)
		}
		d := NewDigest(res.AliveAfter)
		if _, err := ReadAll(f, func(r Record) error { d.Add(r.Key, r.Value, r.ExpireAt); return nil }); err != nil {
			return err
		}
		want, keys = d.Sum(), d.Keys()
	}
	res.Digest, res.Compared = FormatDigest(want), keys
	c, err := dial(ctx, o.Addr, o.Password)
	if err != nil {
		return err
	}
	defer c.close()
	v, err := c.do(DigestCommand, strconv.FormatInt(res.AliveAfter, 10))
	if err == nil && v.Type != '$' {
		err = fmt.Errorf("%s", v)
	}
	if err != nil {
		return fmt.Errorf("%w: cannot verify, %s: %w", ErrConnect, DigestCommand, err)
	}
	_, gotKeys, got, err := ParseDataDigest(string(v.Str))
	if err != nil {
		return err
	}
	if got != res.Digest || gotKeys != keys {
		return fmt.Errorf("%w: the target holds %d keys with digest %s, the backup %d with %s",
			ErrVerify, gotKeys, got, keys, res.Digest)
	}
	return nil
}
