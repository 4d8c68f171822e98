package replica

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/lockstep/lockstep/storage"
)

// ServeSnapshot streams this replica's state to a joining replica. The
// snapshot is opened under the lock together with core.Hold, so the core
// keeps every entry after the snapshot until the joiner has them; the
// bytes are written outside the lock while writes continue.
func (r *Replica) ServeSnapshot(ctx context.Context, from string, _ []byte, w io.Writer) error {
	r.mu.Lock()
	snap, err := r.sm.OpenSnapshot()
	if err != nil {
		r.mu.Unlock()
		return fmt.Errorf("lockstep: open snapshot: %w", err)
	}
	seq := snap.Seq()
	r.core.Hold(seq)
	r.mu.Unlock()
	defer snap.Close()
	r.log.Info("serving snapshot", "to", from, "seq", seq)
	start := time.Now()
	// The sequence number goes first, so the joiner can ask its core
	// whether it still wants a snapshot that old before installing it.
	if _, err := w.Write(binary.BigEndian.AppendUint64(nil, seq)); err != nil {
		return err
	}
	if err := snap.Write(w); err != nil {
		return err
	}
	r.stats.snapshots.Add(1)
	r.log.Info("snapshot sent", "to", from, "seq", seq, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// startFetch fetches a snapshot from the predecessor once at a time.
func (r *Replica) startFetch(ctx context.Context, from string) {
	if r.fetch == nil || !r.fetching.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer r.fetching.Store(false)
		if err := r.fetchSnapshot(ctx, from); err != nil {
			r.log.Warn("snapshot transfer failed; the core will ask again", "from", from, "err", err)
		}
		r.kickLoop()
	}()
}

// fetchSnapshot downloads the whole stream before touching the state, so
// a transfer cut short leaves the replica as it was, then restores it and
// tells the core where its history now starts.
func (r *Replica) fetchSnapshot(ctx context.Context, from string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	start := time.Now()
	rc, err := r.fetch.OpenStream(ctx, from, nil)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	_, err = io.Copy(&buf, rc)
	_ = rc.Close()
	if err != nil {
		return err
	}
	size := buf.Len()
	if size < 8 {
		return fmt.Errorf("lockstep: snapshot stream from %s too short", from)
	}
	seq := binary.BigEndian.Uint64(buf.Next(8))
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.core.AcceptsSnapshot(seq) {
		// A reconfiguration or entries applied meanwhile made it moot;
		// installing it now would put the state out of step with the core.
		r.log.Info("snapshot no longer wanted", "from", from, "seq", seq)
		return nil
	}
	if err := r.sm.Restore(&buf); err != nil && !errors.Is(err, storage.ErrOutOfOrder) {
		return err
	}
	if got := r.sm.AppliedSeq(); got != seq {
		return r.fail(fmt.Errorf("snapshot from %s announced seq %d but restored %d", from, seq, got))
	}
	r.core.Restored(seq)
	r.log.Info("snapshot installed", "from", from, "seq", seq, "bytes", size, "took", time.Since(start).Round(time.Millisecond))
	return nil
}
