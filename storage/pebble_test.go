package storage

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/vfs"
)

func TestPebble(t *testing.T) {
	runStoreSuite(t, func(t *testing.T) Store {
		return openPebble(t, t.TempDir(), PebbleOptions{})
	})
}

func openPebble(t testing.TB, dir string, opts PebbleOptions) *Pebble {
	t.Helper()
	if opts.CacheSize == 0 {
		opts.CacheSize = 1 << 20
	}
	p, err := OpenPebble(dir, opts)
	if err != nil {
		t.Fatalf("OpenPebble: %v", err)
	}
	return p
}

func closePebble(t testing.TB, p *Pebble) {
	t.Helper()
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestPebbleReopen(t *testing.T) {
	dir := t.TempDir()
	p := openPebble(t, dir, PebbleOptions{})
	if !p.Durable() {
		t.Fatal("Durable() = false")
	}
	apply(t, p, 3, set("gone", "x"), setx("e", "1", 11))
	apply(t, p, 4, clearOp(), set("a", "1"), setx("b", "2", 22), set("", "empty"))
	apply(t, p, 9, setx("c", "3", 33), del("a"))
	wantScan := scanAll(t, p, nil, -1)
	closePebble(t, p)

	p = openPebble(t, dir, PebbleOptions{})
	defer closePebble(t, p)
	if p.AppliedSeq() != 9 {
		t.Fatalf("AppliedSeq after reopen = %d, want 9", p.AppliedSeq())
	}
	wantStats(t, p.Stats(), Stats{Keys: 3, Expires: 2})
	got := scanAll(t, p, nil, -1)
	if fmt.Sprint(got) != fmt.Sprint(wantScan) || len(got) != 3 {
		t.Fatalf("scan after reopen = %v, want %v", got, wantScan)
	}
	if err := p.Apply(&Batch{Seq: 9, Ops: []Op{set("z", "z")}}); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("Apply seq 9 after reopen = %v, want ErrOutOfOrder", err)
	}
	apply(t, p, 10, set("b", "again"))
	wantStats(t, p.Stats(), Stats{Keys: 3, Expires: 1})
}

// TestPebbleReplaceIsDurable: a replace back to an older seq is what a
// reopen finds, seq and keys alike.
func TestPebbleReplaceIsDurable(t *testing.T) {
	dir := t.TempDir()
	p := openPebble(t, dir, PebbleOptions{})
	apply(t, p, 9, set("a", "9"))
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(&Batch{Seq: 2, Replace: true, Ops: []Op{clearOp(), set("r", "2")}}); err != nil {
		t.Fatal(err)
	}
	closePebble(t, p)
	p = openPebble(t, dir, PebbleOptions{})
	defer closePebble(t, p)
	if p.AppliedSeq() != 2 {
		t.Fatalf("AppliedSeq after a replace and reopen = %d, want 2", p.AppliedSeq())
	}
	wantGet(t, p, "r", ent("2", 0))
	wantGet(t, p, "a", nil)
}

func TestPebbleWrongCluster(t *testing.T) {
	dir := t.TempDir()
	closePebble(t, openPebble(t, dir, PebbleOptions{})) // no id yet
	closePebble(t, openPebble(t, dir, PebbleOptions{ClusterID: "alpha"}))
	closePebble(t, openPebble(t, dir, PebbleOptions{ClusterID: "alpha"}))
	closePebble(t, openPebble(t, dir, PebbleOptions{})) // no id: no check

	_, err := OpenPebble(dir, PebbleOptions{ClusterID: "beta", CacheSize: 1 << 20})
	if !errors.Is(err, ErrWrongCluster) {
		t.Fatalf("open as beta = %v, want ErrWrongCluster", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "alpha") || !strings.Contains(msg, "beta") {
		t.Fatalf("error %q does not name both cluster ids", msg)
	}
	// The failed open released the directory.
	p := openPebble(t, dir, PebbleOptions{ClusterID: "alpha"})
	apply(t, p, 1, set("k", "v"))
	closePebble(t, p)
}

// crash simulates a power failure: whatever p wrote without an fsync is
// lost. Syncs are ignored while p closes, so closing persists nothing more.
func crash(t *testing.T, fs *vfs.MemFS, p *Pebble) {
	t.Helper()
	fs.SetIgnoreSyncs(true)
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	fs.ResetToSyncedState()
	fs.SetIgnoreSyncs(false)
}

// crashOps is batch seq's content: three keys of its own plus "last", which
// every batch overwrites, and "pre", which half the batches delete.
func crashOps(seq uint64) []Op {
	ops := []Op{set("last", fmt.Sprint(seq))}
	for j := range 3 {
		ops = append(ops, setx(fmt.Sprintf("k/%03d/%d", seq, j), fmt.Sprint(seq), int64(j)))
	}
	if seq%2 == 0 {
		ops = append(ops, del("pre"))
	} else {
		ops = append(ops, set("pre", fmt.Sprint(seq)))
	}
	return ops
}

// checkCrashState checks p holds exactly batches 1..AppliedSeq of crashOps,
// with Stats to match: never part of a batch, never a batch past the seq.
func checkCrashState(t *testing.T, p *Pebble, maxSeq uint64) {
	t.Helper()
	seq := p.AppliedSeq()
	for i := uint64(1); i <= maxSeq; i++ {
		for j := range 3 {
			k := fmt.Sprintf("k/%03d/%d", i, j)
			if i <= seq {
				wantGet(t, p, k, ent(fmt.Sprint(i), int64(j)))
			} else {
				wantGet(t, p, k, nil)
			}
		}
	}
	if seq == 0 {
		wantStats(t, p.Stats(), Stats{})
		return
	}
	wantGet(t, p, "last", ent(fmt.Sprint(seq), 0))
	pre := int64(seq % 2)
	if pre == 1 {
		wantGet(t, p, "pre", ent(fmt.Sprint(seq), 0))
	} else {
		wantGet(t, p, "pre", nil)
	}
	wantStats(t, p.Stats(), Stats{Keys: int64(seq)*3 + 1 + pre, Expires: int64(seq) * 2})
}

func TestPebbleCrash(t *testing.T) {
	fs := vfs.NewStrictMem()
	p := openPebble(t, "db", PebbleOptions{FS: fs})
	for seq := uint64(1); seq <= 20; seq++ {
		apply(t, p, seq, crashOps(seq)...)
	}
	if err := p.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	for seq := uint64(21); seq <= 40; seq++ {
		apply(t, p, seq, crashOps(seq)...)
	}
	crash(t, fs, p)

	p = openPebble(t, "db", PebbleOptions{FS: fs})
	// Exactly the synced prefix survives: StrictMem drops every unsynced
	// write, so more would mean the crash was not simulated.
	if p.AppliedSeq() != 20 {
		t.Fatalf("AppliedSeq after crash = %d, want 20", p.AppliedSeq())
	}
	checkCrashState(t, p, 40)

	for seq := uint64(21); seq <= 30; seq++ {
		apply(t, p, seq, crashOps(seq)...)
	}
	if err := p.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	crash(t, fs, p)
	p = openPebble(t, "db", PebbleOptions{FS: fs})
	defer closePebble(t, p)
	if p.AppliedSeq() != 30 {
		t.Fatalf("AppliedSeq after second crash = %d, want 30", p.AppliedSeq())
	}
	checkCrashState(t, p, 40)
}

func TestPebbleCrashWithoutSync(t *testing.T) {
	fs := vfs.NewStrictMem()
	p := openPebble(t, "db", PebbleOptions{FS: fs, ClusterID: "c1"})
	for seq := uint64(1); seq <= 5; seq++ {
		apply(t, p, seq, crashOps(seq)...)
	}
	crash(t, fs, p)
	// The cluster id was synced when first recorded.
	if _, err := OpenPebble("db", PebbleOptions{FS: fs, ClusterID: "c2"}); !errors.Is(err, ErrWrongCluster) {
		t.Fatalf("open as c2 after crash = %v, want ErrWrongCluster", err)
	}
	p = openPebble(t, "db", PebbleOptions{FS: fs})
	defer closePebble(t, p)
	if p.AppliedSeq() != 0 {
		t.Fatalf("AppliedSeq = %d, want 0: nothing was synced", p.AppliedSeq())
	}
	checkCrashState(t, p, 5)
}

// TestPebbleGroupCommit has many goroutines Apply then Sync concurrently.
// Every Sync that returned must survive the crash.
func TestPebbleGroupCommit(t *testing.T) {
	fs := vfs.NewStrictMem()
	p := openPebble(t, "db", PebbleOptions{FS: fs})
	const workers, rounds = 16, 10
	var (
		applyMu  sync.Mutex // batches must reach Apply in seq order
		seq      uint64
		syncedMu sync.Mutex
		synced   uint64 // highest seq whose Sync returned
		wg       sync.WaitGroup
		errs     = make(chan error, workers)
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				applyMu.Lock()
				seq++
				mine := seq
				err := p.Apply(&Batch{Seq: mine, Ops: crashOps(mine)})
				applyMu.Unlock()
				if err == nil {
					err = p.Sync()
				}
				if err != nil {
					errs <- err
					return
				}
				syncedMu.Lock()
				synced = max(synced, mine)
				syncedMu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	crash(t, fs, p)
	p = openPebble(t, "db", PebbleOptions{FS: fs})
	defer closePebble(t, p)
	if synced != workers*rounds || p.AppliedSeq() != synced {
		t.Fatalf("AppliedSeq after crash = %d, highest synced %d, want %d", p.AppliedSeq(), synced, workers*rounds)
	}
	checkCrashState(t, p, workers*rounds)
}

func TestPebbleCloseWithOpenView(t *testing.T) {
	p := openPebble(t, t.TempDir(), PebbleOptions{})
	apply(t, p, 1, set("a", "1"), set("b", "2"))
	v, err := p.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// A view's callback may call the store even while Close runs: it gets
	// ErrClosed rather than deadlocking.
	started, closed := make(chan struct{}), make(chan error, 1)
	var getErr error
	scanErr := v.Scan(nil, func(k []byte, _ Entry) bool {
		if string(k) == "a" {
			close(started)
			go func() { closed <- p.Close() }()
			return true
		}
		_, _, getErr = p.Get(k)
		return true
	})
	<-started
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if scanErr != nil {
		t.Fatalf("view Scan: %v", scanErr)
	}
	if getErr != nil && !errors.Is(getErr, ErrClosed) {
		t.Fatalf("Get during Close = %v", getErr)
	}
	if err := v.Scan(nil, func([]byte, Entry) bool { return true }); !errors.Is(err, ErrClosed) {
		t.Fatalf("view Scan after store Close = %v, want ErrClosed", err)
	}
}

func TestPebbleDataIDKeptAcrossOpens(t *testing.T) {
	dir := t.TempDir()
	p, err := OpenPebble(dir, PebbleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id := p.DataID()
	if len(id) != 16 {
		t.Fatalf("DataID = %q, want 16 hex digits", id)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if p, err = OpenPebble(dir, PebbleOptions{}); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.DataID() != id {
		t.Fatalf("DataID after reopen = %q, want %q", p.DataID(), id)
	}
	other, err := OpenPebble(t.TempDir(), PebbleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if other.DataID() == id {
		t.Fatal("two directories share a data id")
	}
}
