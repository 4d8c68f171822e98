package replica

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/lockstep/lockstep/statemachine"
)

// Snapshot transfer is chunked (the transport streams it in frames) and
// resumable: a request names the snapshot it is continuing and how many
// bytes it already has, and the server keeps a broken transfer's snapshot
// open for a while so it can continue from that offset. Writing a snapshot
// twice gives the same bytes, so continuing means writing it again and
// skipping what was sent. A large state therefore never has to start over
// because a connection dropped.
//
// Request:  seq (8 bytes) | offset (8 bytes); zeros ask for a new snapshot.
// Response: seq (8 bytes) | offset (8 bytes) | snapshot bytes from offset.
// The response's offset is 0 when the server had to open a new snapshot.

// keepBroken is how long a server keeps a broken transfer's snapshot open
// for the joiner to resume.
const keepBroken = 2 * time.Minute

// fetchAttempts bounds how often a joiner resumes one transfer before it
// gives it up; fetchLoop then starts a new one after a backoff.
const fetchAttempts = 8

// keptSnapshots holds snapshots whose transfer broke, by joiner name.
type keptSnapshots struct {
	mu   sync.Mutex
	byTo map[string]*keptSnapshot
}

type keptSnapshot struct {
	snap  statemachine.Snapshot
	timer *time.Timer
}

// take removes and returns the snapshot kept for to if it has seq.
func (k *keptSnapshots) take(to string, seq uint64) statemachine.Snapshot {
	k.mu.Lock()
	defer k.mu.Unlock()
	ks := k.byTo[to]
	if ks == nil {
		return nil
	}
	delete(k.byTo, to)
	if !ks.timer.Stop() {
		return nil // expiring right now; its timer closes it
	}
	if ks.snap.Seq() != seq || seq == 0 {
		_ = ks.snap.Close()
		return nil
	}
	return ks.snap
}

// keep holds snap for to until it is resumed or keepBroken passes.
func (k *keptSnapshots) keep(to string, snap statemachine.Snapshot) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.byTo == nil {
		k.byTo = map[string]*keptSnapshot{}
	}
	if old := k.byTo[to]; old != nil && old.timer.Stop() {
		_ = old.snap.Close()
	}
	ks := &keptSnapshot{snap: snap}
	ks.timer = time.AfterFunc(keepBroken, func() {
		k.mu.Lock()
		if k.byTo[to] == ks {
			delete(k.byTo, to)
		}
		k.mu.Unlock()
		_ = snap.Close()
	})
	k.byTo[to] = ks
}

// ServeSnapshot streams this replica's state to a joining replica. A new
// snapshot is opened under the lock together with core.Hold, so the core
// keeps every entry after it until the joiner has them; the bytes are
// written outside the lock while writes continue.
func (r *Replica) ServeSnapshot(ctx context.Context, from string, req []byte, w io.Writer) error {
	var seq, offset uint64
	if len(req) == 16 {
		seq, offset = binary.BigEndian.Uint64(req), binary.BigEndian.Uint64(req[8:])
	}
	snap := r.kept.take(from, seq)
	if snap == nil {
		r.mu.Lock()
		if !r.core.Status().ServesSnapshot {
			r.mu.Unlock()
			return fmt.Errorf("%w: %s cannot serve a snapshot now", ErrNotServing, r.opts.Name)
		}
		var err error
		if snap, err = r.sm.OpenSnapshot(); err != nil {
			r.mu.Unlock()
			return fmt.Errorf("lockstep: open snapshot: %w", err)
		}
		r.core.Hold(snap.Seq())
		r.mu.Unlock()
		offset = 0
	}
	seq = snap.Seq()
	r.log.Info("serving snapshot", "to", from, "seq", seq, "resume_at", offset)
	start := time.Now()
	head := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, seq), offset)
	if _, err := w.Write(head); err != nil {
		r.kept.keep(from, snap)
		return err
	}
	if err := snap.Write(&skipWriter{w: w, skip: offset}); err != nil {
		r.kept.keep(from, snap)
		return err
	}
	_ = snap.Close()
	r.stats.snapshots.Add(1)
	r.log.Info("snapshot sent", "to", from, "seq", seq, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// skipWriter discards the first skip bytes written to it.
type skipWriter struct {
	w    io.Writer
	skip uint64
}

func (s *skipWriter) Write(p []byte) (int, error) {
	n := len(p)
	if s.skip >= uint64(n) {
		s.skip -= uint64(n)
		return n, nil
	}
	p = p[s.skip:]
	s.skip = 0
	if _, err := s.w.Write(p); err != nil {
		return 0, err
	}
	return n, nil
}

// A core asks for a snapshot once, when its upstream answers
// SnapshotNeeded, and then waits for it without saying Hello again. A
// transfer that fails, every resumption included, is therefore retried by
// the runtime, with a backoff from fetchRetryMin doubling to fetchRetryMax,
// for as long as the core still wants that snapshot: otherwise the joiner
// would wait forever, and a primary-backup group with such a backup would
// stop committing.
const (
	fetchRetryMin = 50 * time.Millisecond
	fetchRetryMax = 2 * time.Second
)

// fetchWant is a snapshot the core asked for: its source, and the epoch
// it asked in. A new configuration resets the core's link upstream, so a
// core that still needs a snapshot then asks again.
type fetchWant struct {
	from  string
	epoch uint64
}

// fetchState is the snapshot the core asked for last, whether a transfer
// of it is under way, and when a failed one may be tried again. One
// transfer runs at a time; a request that arrives meanwhile replaces what
// is fetched next. The retry is started by the run loop's tick (retryFetch)
// rather than by a goroutine that sleeps, so a simulation that steps the
// replica by hand retries as the real runtime does.
type fetchState struct {
	mu      sync.Mutex
	running bool
	want    fetchWant // from is "" when nothing is wanted
	wait    time.Duration
	nextAt  time.Time
}

// fetchWanted is the source of the snapshot the replica still wants, or "".
func (r *Replica) fetchWanted() string {
	r.fetching.mu.Lock()
	defer r.fetching.mu.Unlock()
	return r.fetching.want.from
}

// busy reports whether a transfer is under way.
func (f *fetchState) busy() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running
}

// startFetch fetches a snapshot from the source the core named. A request
// while a transfer runs replaces the one to retry.
func (r *Replica) startFetch(ctx context.Context, from string) {
	if r.fetch == nil {
		return
	}
	r.mu.RLock()
	want := fetchWant{from: from, epoch: r.core.Status().Epoch}
	r.mu.RUnlock()
	f := &r.fetching
	f.mu.Lock()
	if f.want != want {
		f.want, f.wait, f.nextAt = want, fetchRetryMin, time.Time{}
	}
	start := !f.running
	f.running = true
	f.mu.Unlock()
	if start {
		r.opts.Spawn(func() { r.fetchOne(ctx, want) })
	}
}

// fetchOne runs one transfer of want, resumptions included. If it failed
// while the core still wants it, the next tick after the backoff tries
// again; if another request replaced it meanwhile, that one starts now.
func (r *Replica) fetchOne(ctx context.Context, want fetchWant) {
	err := r.fetchSnapshot(ctx, want.from)
	r.kickLoop()
	f := &r.fetching
	f.mu.Lock()
	next := f.want
	switch {
	case next != want:
		f.mu.Unlock()
		r.opts.Spawn(func() { r.fetchOne(ctx, next) })
		return
	case err == nil:
		f.want = fetchWant{} // installed, or no longer wanted
	default:
		r.log.Warn("snapshot transfer failed; retrying", "from", want.from, "in", f.wait, "err", err)
		f.nextAt = r.opts.Now().Add(f.wait)
		f.wait = min(2*f.wait, fetchRetryMax)
	}
	f.running = false
	f.mu.Unlock()
}

// retryFetch starts the wanted transfer again once its backoff has passed,
// if the core still waits for it; the run loop calls it every tick.
func (r *Replica) retryFetch(ctx context.Context, now time.Time) {
	f := &r.fetching
	f.mu.Lock()
	want := f.want
	due := want.from != "" && !f.running && !now.Before(f.nextAt)
	f.mu.Unlock()
	if !due {
		return
	}
	wanted := r.wantsSnapshot(ctx, want)
	f.mu.Lock()
	if f.running || f.want != want {
		f.mu.Unlock()
		return
	}
	if !wanted {
		f.want = fetchWant{}
		f.mu.Unlock()
		return
	}
	f.running = true
	f.mu.Unlock()
	r.opts.Spawn(func() { r.fetchOne(ctx, want) })
}

// wantsSnapshot reports whether the core still waits for the snapshot w:
// the run and the replica are alive, the configuration it was asked in
// still holds, and the core would accept a snapshot from w.from that is
// not behind its state. Only the protocol-neutral core methods decide.
func (r *Replica) wantsSnapshot(ctx context.Context, w fetchWant) bool {
	if ctx.Err() != nil || r.Err() != nil {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	st := r.core.Status()
	return st.Epoch == w.epoch && r.core.AcceptsSnapshot(w.from, st.Applied)
}

// fetchSnapshot downloads the whole snapshot, resuming a broken transfer
// where it stopped, before touching the state, so a transfer cut short
// leaves the replica as it was. It then restores it and tells the core
// where its history now starts.
func (r *Replica) fetchSnapshot(ctx context.Context, from string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	start := time.Now()
	var (
		buf bytes.Buffer
		seq uint64
		err error
	)
	for attempt := 1; ; attempt++ {
		if seq, err = r.fetchOnce(ctx, from, seq, &buf); err == nil {
			break
		}
		if attempt == fetchAttempts || ctx.Err() != nil {
			return err
		}
		r.log.Info("snapshot transfer broken; resuming", "from", from, "seq", seq, "have", buf.Len(), "err", err)
		if err := r.opts.Sleep(ctx, time.Duration(attempt)*50*time.Millisecond); err != nil {
			return err
		}
	}
	return r.install(from, seq, &buf, start)
}

// fetchOnce asks for the snapshot seq from buf.Len() on (a new one when
// seq is 0) and appends what arrives to buf. If the server could not
// resume, buf is reset and filled from the start of the snapshot it sent.
func (r *Replica) fetchOnce(ctx context.Context, from string, seq uint64, buf *bytes.Buffer) (uint64, error) {
	req := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, seq), uint64(buf.Len()))
	rc, err := r.fetch.OpenStream(ctx, from, req)
	if err != nil {
		return seq, err
	}
	defer rc.Close()
	var head [16]byte
	if _, err := io.ReadFull(rc, head[:]); err != nil {
		return seq, err
	}
	got, offset := binary.BigEndian.Uint64(head[:]), binary.BigEndian.Uint64(head[8:])
	if got != seq || offset != uint64(buf.Len()) {
		if offset != 0 {
			return 0, fmt.Errorf("lockstep: snapshot server resumed seq %d at %d, asked for seq %d at %d", got, offset, seq, buf.Len())
		}
		buf.Reset()
	}
	_, err = io.Copy(buf, rc)
	return got, err
}

// install restores a downloaded snapshot if the core still wants it.
func (r *Replica) install(from string, seq uint64, buf *bytes.Buffer, start time.Time) error {
	size := buf.Len()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.core.AcceptsSnapshot(from, seq) {
		// A reconfiguration or entries applied meanwhile made it moot;
		// installing it now would put the state out of step with the core.
		r.log.Info("snapshot no longer wanted", "from", from, "seq", seq)
		return nil
	}
	if err := r.sm.Restore(buf); err != nil {
		return err
	}
	if got := r.sm.AppliedSeq(); got != seq {
		return r.fail(fmt.Errorf("snapshot from %s announced seq %d but restored %d", from, seq, got))
	}
	r.core.Restored(from, seq)
	r.stats.installed.Add(1)
	r.stats.installedBytes.Add(uint64(size))
	r.log.Info("snapshot installed", "from", from, "seq", seq, "bytes", size, "took", time.Since(start).Round(time.Millisecond))
	return nil
}
