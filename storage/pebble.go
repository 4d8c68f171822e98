package storage

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
)

// Key layout. Every pebble key starts with one byte that says what it is, so
// no user key, whatever its bytes, can collide with the store's metadata:
//
//	0x00 's'        state: applied seq, Keys, Expires (3 x uint64 big-endian)
//	0x00 'c'        cluster id, written on the first open that names one
//	0x00 'i'        data id: random, written on the directory's first open
//	0x00 'm' <key>  a metadata key (OpSetMeta): its value as given
//	0x01 <user key> ExpireAt (int64 as big-endian uint64) followed by the value
//
// User keys sort among themselves exactly as the raw keys do, and OpClear is
// a single range deletion of [0x01, 0x02). Metadata keys likewise sort as
// their own bytes do, and OpClearMeta is one range deletion of
// [0x00 'm', 0x00 'n'), which holds neither the state, the cluster id nor the data id.
const (
	prefixMeta = 0x00
	prefixUser = 0x01
	expireLen  = 8
	stateLen   = 24
)

var (
	keyState     = []byte{prefixMeta, 's'}
	keyCluster   = []byte{prefixMeta, 'c'}
	keyDataID    = []byte{prefixMeta, 'i'}
	userKeyStart = []byte{prefixUser}
	userKeyEnd   = []byte{prefixUser + 1}
	metaKeyStart = []byte{prefixMeta, 'm'}
	metaKeyEnd   = []byte{prefixMeta, 'm' + 1}
)

// defaultCacheSize is the block cache used when PebbleOptions.CacheSize is 0.
const defaultCacheSize = 64 << 20

// ErrCorrupt means the data directory holds a record this package could not
// have written.
var ErrCorrupt = errors.New("lockstep: storage data corrupt")

// ErrFailed means a write or an fsync of the store failed (a failing disk,
// a full one) or pebble gave up (Logger.Fatalf). The store then takes no
// more writes: Apply and Sync return ErrFailed for the rest of its life.
// What it applied may not be on disk, and a later fsync that succeeds
// would not prove that it is: the kernel may have dropped the pages whose
// writeback failed and marked them clean. Reads still work.
var ErrFailed = errors.New("lockstep: storage failed")

// PebbleOptions configures OpenPebble.
type PebbleOptions struct {
	// ClusterID, if non-empty, is recorded on the first open that gives one;
	// a later open with a different non-empty ClusterID fails with
	// ErrWrongCluster, so a node cannot be started on another node's data.
	ClusterID string
	// FS is the filesystem; nil means the real one. Tests inject
	// vfs.NewStrictMem() to simulate crashes that lose unsynced writes.
	FS vfs.FS
	// Logger receives pebble's own log lines; nil discards them.
	Logger *slog.Logger
	// CacheSize is the block cache size in bytes; 0 means 64 MiB.
	CacheSize int64
}

// pebbleState is what the state key holds, published atomically after each
// commit so Stats and AppliedSeq never take a lock.
type pebbleState struct {
	seq   uint64
	stats Stats
}

// Pebble is a durable Store on a Pebble LSM. Apply commits one pebble batch
// without waiting for the disk; Sync later makes everything applied durable
// with one WAL fsync shared by concurrent callers.
type Pebble struct {
	db *pebble.DB

	// life guards closed: every method holds it for reading while it uses
	// db, and Close takes it for writing.
	life   sync.RWMutex
	closed bool

	// applyMu serializes Apply so the counters read-modify-write is exact.
	applyMu sync.Mutex
	// keyBuf is Apply's scratch space for prefixed keys, under applyMu.
	keyBuf []byte

	state     atomic.Pointer[pebbleState]
	failed    atomic.Pointer[error] // set once, by fail
	syncedSeq atomic.Uint64         // highest seq known to be on disk
	clusterID string                // recorded cluster id, "" if none; set by load
	dataID    string                // the directory's data id; set by load

	keyPool sync.Pool // *[]byte scratch for Get's prefixed key

	viewsMu sync.Mutex
	views   map[*pebbleView]struct{}
}

var _ Store = (*Pebble)(nil)

// OpenPebble opens or creates the store in dir. It restores AppliedSeq and
// Stats from the last durable state and checks the cluster id.
func OpenPebble(dir string, opts PebbleOptions) (*Pebble, error) {
	p := &Pebble{views: make(map[*pebbleView]struct{})}
	db, err := openDB(dir, opts, p.fail)
	if err != nil {
		return nil, err
	}
	p.db = db
	p.keyPool.New = func() any { b := make([]byte, 0, 64); return &b }
	if err := p.load(opts.ClusterID); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	return p, nil
}

// openDB opens pebble in dir; fatal is told when pebble gives up
// (Logger.Fatalf).
func openDB(dir string, opts PebbleOptions, fatal func(error) error) (*pebble.DB, error) {
	size := opts.CacheSize
	if size <= 0 {
		size = defaultCacheSize
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	if err := makeDurableDir(fs, dir); err != nil {
		return nil, err
	}
	cache := pebble.NewCache(size)
	// The DB takes its own reference; dropping ours lets Close free it.
	defer cache.Unref()
	po := &pebble.Options{
		FS:                 fs,
		Cache:              cache,
		Logger:             slogLogger{l: log, fatal: fatal},
		FormatMajorVersion: pebble.FormatNewest,
		EventListener: &pebble.EventListener{
			BackgroundError: func(err error) {
				log.Error("pebble background error", "err", err)
			},
		},
	}
	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("lockstep: open pebble store %s: %w", dir, err)
	}
	return db, nil
}

// makeDurableDir creates dir and any missing parents, syncing the parent of
// each new directory. Pebble syncs the entries inside dir but not dir's own
// entry in its parent, so without this a crash soon after the first open
// could lose the whole directory, synced writes included.
func makeDurableDir(fs vfs.FS, dir string) error {
	var created []string
	for d := dir; d != "" && d != "." && d != fs.PathDir(d); d = fs.PathDir(d) {
		_, err := fs.Stat(d)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("lockstep: storage dir %s: %w", dir, err)
		}
		created = append(created, d)
	}
	if len(created) == 0 {
		return nil
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("lockstep: create storage dir %s: %w", dir, err)
	}
	for i := len(created) - 1; i >= 0; i-- {
		if err := syncDir(fs, fs.PathDir(created[i])); err != nil {
			return fmt.Errorf("lockstep: create storage dir %s: %w", dir, err)
		}
	}
	return nil
}

func syncDir(fs vfs.FS, dir string) error {
	f, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}

// load reads the state and cluster keys, recording clusterID if none is
// stored yet.
func (p *Pebble) load(clusterID string) error {
	st, err := readState(p.db)
	if err != nil {
		return err
	}
	p.state.Store(st)
	// pebble.Open flushes whatever it replays from the WAL into synced
	// sstables, so everything a fresh open sees is already durable.
	p.syncedSeq.Store(st.seq)
	if err := p.loadDataID(); err != nil {
		return err
	}
	stored, err := getCopy(p.db, keyCluster)
	if err != nil {
		return err
	}
	p.clusterID = string(stored)
	if clusterID == "" {
		return nil
	}
	if stored != nil && string(stored) != clusterID {
		return fmt.Errorf("%w: directory has %q, opened as %q", ErrWrongCluster, stored, clusterID)
	}
	if stored == nil {
		if err := setSync(p.db, keyCluster, []byte(clusterID)); err != nil {
			return fmt.Errorf("lockstep: record cluster id: %w", err)
		}
		p.clusterID = clusterID
	}
	return nil
}

// loadDataID reads the directory's data id, or makes one on its first
// open.
func (p *Pebble) loadDataID() error {
	id, err := getCopy(p.db, keyDataID)
	if err != nil {
		return err
	}
	if id == nil {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		id = []byte(hex.EncodeToString(b))
		if err := setSync(p.db, keyDataID, id); err != nil {
			return fmt.Errorf("lockstep: record data id: %w", err)
		}
	}
	p.dataID = string(id)
	return nil
}

// setSync writes one key durably.
func setSync(db *pebble.DB, key, value []byte) error {
	b := db.NewBatch()
	defer b.Close()
	if err := b.Set(key, value, nil); err != nil {
		return err
	}
	return commitSync(db, b)
}

// commitSync commits b and waits until it is on disk, returning the error
// of a failed WAL write or fsync. Pebble's own synchronous commit
// (Batch.Commit or DB.Apply with pebble.Sync) does not return that error:
// it calls Logger.Fatalf ("fatal commit error"), which would take the
// process down before the caller could stop acknowledging in order.
// ApplyNoSyncWait and SyncWait make the same commit and the same wait,
// and hand the error back.
func commitSync(db *pebble.DB, b *pebble.Batch) error {
	if err := db.ApplyNoSyncWait(b, pebble.Sync); err != nil {
		return err
	}
	return b.SyncWait()
}

// fail records err as the store's failure, unless one is recorded
// already, and returns the recorded failure (wrapping ErrFailed).
func (p *Pebble) fail(err error) error {
	err = fmt.Errorf("%w: %w", ErrFailed, err)
	p.failed.CompareAndSwap(nil, &err)
	return *p.failed.Load()
}

// failure is the store's recorded failure, or nil.
func (p *Pebble) failure() error {
	if e := p.failed.Load(); e != nil {
		return *e
	}
	return nil
}

// DataID identifies this data directory: random, made on its first open
// and kept for its life, so a wiped or replaced directory has another. A
// cluster records each member's (coord.Config.Data) to know, after a
// total outage, which restarted process holds which member's state.
func (p *Pebble) DataID() string { return p.dataID }

// ClusterID is the cluster id recorded in the directory, or "" if none.
func (p *Pebble) ClusterID() string { return p.clusterID }

// readState decodes the state key from r; a missing key is the empty state.
func readState(r pebble.Reader) (*pebbleState, error) {
	v, err := getCopy(r, keyState)
	if err != nil || v == nil {
		return &pebbleState{}, err
	}
	if len(v) != stateLen {
		return nil, fmt.Errorf("%w: state record of %d bytes", ErrCorrupt, len(v))
	}
	return &pebbleState{
		seq: binary.BigEndian.Uint64(v),
		stats: Stats{
			Keys:    int64(binary.BigEndian.Uint64(v[8:])),
			Expires: int64(binary.BigEndian.Uint64(v[16:])),
		},
	}, nil
}

// getCopy returns a copy of the value under a raw key, or nil if absent.
func getCopy(r pebble.Reader, key []byte) ([]byte, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lockstep: storage read: %w", err)
	}
	out := bytes.Clone(v)
	return out, closer.Close()
}

// Get returns a copy of key's entry: pebble's buffers are only valid until
// the read is released.
func (p *Pebble) Get(key []byte) (Entry, bool, error) {
	p.life.RLock()
	defer p.life.RUnlock()
	if p.closed {
		return Entry{}, false, ErrClosed
	}
	kb := p.keyPool.Get().(*[]byte)
	k := append(append((*kb)[:0], prefixUser), key...)
	v, closer, err := p.db.Get(k)
	*kb = k
	p.keyPool.Put(kb)
	if errors.Is(err, pebble.ErrNotFound) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("lockstep: storage get: %w", err)
	}
	defer closer.Close()
	e, err := decodeEntry(key, v)
	if err != nil {
		return Entry{}, false, err
	}
	e.Value = bytes.Clone(e.Value)
	return e, true, nil
}

// decodeEntry splits a stored value; the result aliases v.
func decodeEntry(key, v []byte) (Entry, error) {
	if len(v) < expireLen {
		return Entry{}, fmt.Errorf("%w: entry for key %q has %d bytes", ErrCorrupt, key, len(v))
	}
	return Entry{ExpireAt: int64(binary.BigEndian.Uint64(v)), Value: v[expireLen:]}, nil
}

// Scan iterates a consistent point-in-time image of the keyspace. fn runs
// while Close is held off, so it must not call back into the store.
func (p *Pebble) Scan(start []byte, fn func(key []byte, e Entry) bool) error {
	p.life.RLock()
	defer p.life.RUnlock()
	if p.closed {
		return ErrClosed
	}
	return scanReader(p.db, start, fn)
}

// scanReader scans the user keys of r from start.
func scanReader(r pebble.Reader, start []byte, fn func(key []byte, e Entry) bool) error {
	lower := append([]byte{prefixUser}, start...)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: userKeyEnd})
	if err != nil {
		return fmt.Errorf("lockstep: storage scan: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		key := it.Key()[1:]
		v, err := it.ValueAndErr()
		if err != nil {
			return errors.Join(fmt.Errorf("lockstep: storage scan: %w", err), it.Close())
		}
		e, err := decodeEntry(key, v)
		if err != nil {
			return errors.Join(err, it.Close())
		}
		if !fn(key, e) {
			break
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("lockstep: storage scan: %w", err)
	}
	return nil
}

// ScanMeta iterates the metadata keys with prefix in a consistent
// point-in-time image. fn runs while Close is held off, so it must not call
// back into the store.
func (p *Pebble) ScanMeta(prefix []byte, fn func(key, value []byte) bool) error {
	p.life.RLock()
	defer p.life.RUnlock()
	if p.closed {
		return ErrClosed
	}
	lower := append(bytes.Clone(metaKeyStart), prefix...)
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: metaUpper(prefix)})
	if err != nil {
		return fmt.Errorf("lockstep: storage scan meta: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return errors.Join(fmt.Errorf("lockstep: storage scan meta: %w", err), it.Close())
		}
		if !fn(it.Key()[len(metaKeyStart):], v) {
			break
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("lockstep: storage scan meta: %w", err)
	}
	return nil
}

// metaUpper returns the least raw key greater than every metadata key that
// starts with prefix: the prefix with its last byte below 0xff incremented
// (and the bytes after it dropped), or the end of the namespace.
func metaUpper(prefix []byte) []byte {
	for i := len(prefix) - 1; i >= 0; i-- {
		if prefix[i] != 0xff {
			end := append(bytes.Clone(metaKeyStart), prefix[:i+1]...)
			end[len(end)-1]++
			return end
		}
	}
	return metaKeyEnd
}

// Stats counts the keys as of the last applied Batch.
func (p *Pebble) Stats() Stats { return p.state.Load().stats }

// AppliedSeq is the Seq of the last applied Batch.
func (p *Pebble) AppliedSeq() uint64 { return p.state.Load().seq }

// Durable is true.
func (p *Pebble) Durable() bool { return true }

// Sync makes every Batch applied before the call durable.
//
// It writes an empty LogData record with pebble.Sync, the idiom pebble
// itself uses to sync the WAL (see Checkpoint's WithFlushedWAL), through
// commitSync so that a failed fsync comes back as an error. The WAL is
// one sequential log, so syncing a record syncs every batch committed before
// it; a WAL retired by a memtable switch was synced when it was closed. The
// record adds nothing to the memtable. Group commit comes from pebble's
// commit pipeline: its LogWriter flushes and fsyncs whatever is queued in
// one go, so Sync calls that arrive while an fsync is in flight share the
// next one. Committing an empty pebble batch would not work: Commit returns
// at once for an empty batch without touching the WAL.
//
// A Sync with nothing applied since the last completed one returns at once.
// A failed Sync fails the store (ErrFailed): a WAL write or fsync that
// failed once is never retried, since a retry that succeeds proves
// nothing about the writes the failed one lost.
func (p *Pebble) Sync() error {
	p.life.RLock()
	defer p.life.RUnlock()
	if p.closed {
		return ErrClosed
	}
	if err := p.failure(); err != nil {
		return err
	}
	seq := p.AppliedSeq()
	if seq <= p.syncedSeq.Load() {
		return nil
	}
	b := p.db.NewBatch()
	defer b.Close()
	if err := b.LogData(nil, nil); err != nil {
		return fmt.Errorf("lockstep: storage sync: %w", err)
	}
	if err := commitSync(p.db, b); err != nil {
		return p.fail(fmt.Errorf("sync: %w", err))
	}
	for {
		old := p.syncedSeq.Load()
		if seq <= old || p.syncedSeq.CompareAndSwap(old, seq) {
			return nil
		}
	}
}

// Snapshot returns a view on a pebble snapshot. The view must be closed;
// Close closes any still open.
func (p *Pebble) Snapshot() (View, error) {
	p.life.RLock()
	defer p.life.RUnlock()
	if p.closed {
		return nil, ErrClosed
	}
	snap := p.db.NewSnapshot()
	// The state key is read from the snapshot itself, so the view's seq and
	// stats match its data exactly even while Apply runs.
	st, err := readState(snap)
	if err != nil {
		return nil, errors.Join(err, snap.Close())
	}
	v := &pebbleView{p: p, snap: snap, state: *st}
	p.viewsMu.Lock()
	p.views[v] = struct{}{}
	p.viewsMu.Unlock()
	return v, nil
}

// Close closes open views, flushes the memtable to disk and closes pebble.
// A failed store is not flushed: a flush starts a new WAL, and pebble
// panics when closing the old one fails, as its final fsync would; and
// nothing more is to be made durable in a store that failed.
//
// Once the closed flag is set and the in-flight calls have drained, no
// method touches db, so the rest runs without the lock: a view's Scan
// callback that calls the store then gets ErrClosed instead of deadlocking
// against Close waiting for that Scan.
func (p *Pebble) Close() error {
	p.life.Lock()
	if p.closed {
		p.life.Unlock()
		return ErrClosed
	}
	p.closed = true
	p.life.Unlock()
	p.viewsMu.Lock()
	views := make([]*pebbleView, 0, len(p.views))
	for v := range p.views {
		views = append(views, v)
	}
	p.viewsMu.Unlock()
	var errs []error
	for _, v := range views {
		if err := v.Close(); err != nil && !errors.Is(err, ErrClosed) {
			errs = append(errs, err)
		}
	}
	if err := p.failure(); err != nil {
		errs = append(errs, err)
	} else if err := p.db.Flush(); err != nil {
		errs = append(errs, fmt.Errorf("lockstep: storage flush: %w", err))
	}
	if err := p.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("lockstep: storage close: %w", err))
	}
	return errors.Join(errs...)
}

// pebbleView is a Pebble snapshot with the state it was taken at.
type pebbleView struct {
	p     *Pebble
	mu    sync.RWMutex // guards closed against Scan
	snap  *pebble.Snapshot
	state pebbleState
	done  bool
}

func (v *pebbleView) Scan(start []byte, fn func(key []byte, e Entry) bool) error {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.done {
		return ErrClosed
	}
	return scanReader(v.snap, start, fn)
}

func (v *pebbleView) Stats() Stats       { return v.state.stats }
func (v *pebbleView) AppliedSeq() uint64 { return v.state.seq }

func (v *pebbleView) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.done {
		return ErrClosed
	}
	v.done = true
	// The snapshot is released before the view leaves the set, so a
	// concurrent Pebble.Close that no longer sees it cannot close the DB
	// under a live snapshot.
	err := v.snap.Close()
	v.p.viewsMu.Lock()
	delete(v.p.views, v)
	v.p.viewsMu.Unlock()
	if err != nil {
		return fmt.Errorf("lockstep: storage snapshot close: %w", err)
	}
	return nil
}

// slogLogger adapts slog to pebble's Logger.
type slogLogger struct {
	l     *slog.Logger
	fatal func(error) error // fails the store
}

func (s slogLogger) Infof(format string, args ...any) {
	s.l.Info(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf fails the store, logs and panics. Pebble calls it when it cannot
// go on (a MANIFEST write or fsync failed, an invariant broke) and does
// not expect it to return: returning would let the caller carry on as if
// the operation had worked. The panic ends the process, loudly, unless
// someone recovers it, as a library must not exit the process itself;
// the store is failed first, so even then it takes no more writes.
func (s slogLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if s.fatal != nil {
		s.fatal(errors.New("pebble: " + msg))
	}
	s.l.Error("pebble gave up; stopping", "component", "pebble", "err", msg)
	panic("pebble: " + msg)
}
