package replica

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/protocol/pb"
	"github.com/lockstep/lockstep/storage"
)

type fixedEnv struct{}

func (fixedEnv) NowMillis() int64 { return 1_000_000 }
func (fixedEnv) Rand() uint64     { return 7 }

func newTestReplica(t *testing.T, name string) *Replica {
	t.Helper()
	store := storage.NewMemory()
	r, err := New(Options{Name: name, Incarnation: "i", Machine: newMachine(t, store), Store: store})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// flakyFetcher serves streams from src's ServeSnapshot, cutting the first
// cuts transfers after limit bytes, and records every request.
type flakyFetcher struct {
	src   *Replica
	limit int
	cuts  int

	mu   sync.Mutex
	reqs [][2]uint64
}

var errCut = errors.New("connection cut")

func (f *flakyFetcher) OpenStream(ctx context.Context, to string, req []byte) (io.ReadCloser, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, [2]uint64{binary.BigEndian.Uint64(req), binary.BigEndian.Uint64(req[8:])})
	cut := len(f.reqs) <= f.cuts
	f.mu.Unlock()
	pr, pw := io.Pipe()
	go func() {
		var w io.Writer = pw
		if cut {
			w = &cutWriter{w: pw, left: f.limit}
		}
		err := f.src.ServeSnapshot(ctx, "joiner", req, w)
		if err == nil && cut {
			err = errCut
		}
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// cutWriter fails once left bytes have passed, like a dropped connection.
type cutWriter struct {
	w    io.Writer
	left int
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if len(p) > c.left {
		n, _ := c.w.Write(p[:c.left])
		c.left = 0
		return n, errCut
	}
	c.left -= len(p)
	return c.w.Write(p)
}

// TestSnapshotTransferResumes cuts a snapshot transfer twice and checks
// that the joiner resumes from the bytes it has (not from zero) and ends
// with exactly the source's state.
func TestSnapshotTransferResumes(t *testing.T) {
	src := newTestReplica(t, "tail")
	for i := range 2000 {
		u, err := src.sm.Prepare(toArgs("SET", fmt.Sprintf("key:%05d", i), fmt.Sprintf("value-%d", i)), fixedEnv{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := src.sm.Apply(uint64(i+1), u, nil); err != nil {
			t.Fatal(err)
		}
	}
	joiner := newTestReplica(t, "joiner")
	joiner.applyConfig(coord.Config{Epoch: 1, Members: []coord.Member{{Name: "tail", Incarnation: "x"}},
		Joining: &coord.Member{Name: "joiner", Incarnation: "i"}})
	f := &flakyFetcher{src: src, limit: 10_000, cuts: 2}
	joiner.fetch = f
	if err := joiner.fetchSnapshot(context.Background(), "tail"); err != nil {
		t.Fatal(err)
	}
	if got := joiner.sm.AppliedSeq(); got != 2000 {
		t.Fatalf("joiner applied %d, want 2000", got)
	}
	if a, b := joiner.store.Stats(), src.store.Stats(); a != b {
		t.Fatalf("joiner has %+v, source %+v", a, b)
	}
	out, err := joiner.sm.Read(toArgs("GET", "key:01999"), 1_000_000, nil)
	if err != nil || string(out) != "$10\r\nvalue-1999\r\n" {
		t.Fatalf("GET on joiner = %q, %v", out, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) != 3 || f.reqs[0] != [2]uint64{0, 0} || f.reqs[1][0] != 2000 || f.reqs[1][1] == 0 || f.reqs[2][1] <= f.reqs[1][1] {
		t.Fatalf("requests %v: want a fresh one, then two resumptions of seq 2000 at growing offsets", f.reqs)
	}
}

func toArgs(s ...string) [][]byte {
	out := make([][]byte, len(s))
	for i, a := range s {
		out[i] = []byte(a)
	}
	return out
}

// failingFetcher fails the first fails opens, as an unreachable source
// would, then serves src's snapshots.
type failingFetcher struct {
	src   *Replica
	fails int

	mu    sync.Mutex
	opens int
}

var errUnreachable = errors.New("source unreachable")

func (f *failingFetcher) OpenStream(ctx context.Context, to string, req []byte) (io.ReadCloser, error) {
	f.mu.Lock()
	f.opens++
	fail := f.fails < 0 || f.opens <= f.fails
	f.mu.Unlock()
	if fail {
		return nil, errUnreachable
	}
	return (&flakyFetcher{src: f.src}).OpenStream(ctx, to, req)
}

func (f *failingFetcher) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.opens
}

// sourceWithKeys is a replica named name holding n keys at seq n.
func sourceWithKeys(t *testing.T, name string, n int) *Replica {
	t.Helper()
	src := newTestReplica(t, name)
	for i := range n {
		u, err := src.sm.Prepare(toArgs("SET", fmt.Sprintf("key:%05d", i), "v"), fixedEnv{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := src.sm.Apply(uint64(i+1), u, nil); err != nil {
			t.Fatal(err)
		}
	}
	return src
}

// pbJoinerAskedForSnapshot is a primary-backup joiner "b" of primary "a"
// that a has told to fetch a snapshot, with its effects carried out: its
// one request for the snapshot has reached the runtime.
func pbJoinerAskedForSnapshot(ctx context.Context, t *testing.T, fetch SnapshotFetcher) *Replica {
	t.Helper()
	store := storage.NewMemory()
	r, err := New(Options{Name: "b", Incarnation: "i", Protocol: ProtocolPrimaryBackup,
		Machine: newMachine(t, store), Store: store})
	if err != nil {
		t.Fatal(err)
	}
	r.Attach(dropAll{}, fetch, nil)
	r.applyConfig(coord.Config{Epoch: 1, Protocol: ProtocolPrimaryBackup,
		Members: []coord.Member{{Name: "a", Incarnation: "x"}}, Joining: &coord.Member{Name: "b", Incarnation: "i"}})
	r.Deliver("a", pb.AppendMessage(nil, pb.Message{Type: pb.MsgSnapshotNeeded, From: "a", To: "b", Epoch: 1, Lineage: 1}))
	r.handleReady(ctx)
	go r.Run(ctx) // its tick retries a failed transfer
	return r
}

// TestFailedSnapshotFetchIsRetried: a core asks for a snapshot once per
// SnapshotNeeded and then waits for it, saying no more Hellos, so a
// transfer that fails (every resumption included) must be tried again by
// the runtime, or the joiner waits forever and a primary-backup group
// with such a backup stops committing.
func TestFailedSnapshotFetchIsRetried(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := &failingFetcher{src: sourceWithKeys(t, "a", 100), fails: fetchAttempts + 2}
	r := pbJoinerAskedForSnapshot(ctx, t, f)
	waitFor(t, "the snapshot at seq 100 to be installed", func() bool { return r.sm.AppliedSeq() == 100 })
	if got := f.count(); got != fetchAttempts+3 {
		t.Fatalf("%d opens, want %d failed then one that succeeded", got, fetchAttempts+3)
	}
}

// TestSnapshotRetryStopsWhenUnwanted checks that the retries end once a
// new configuration means the core no longer waits for that snapshot.
func TestSnapshotRetryStopsWhenUnwanted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := &failingFetcher{fails: -1}
	r := pbJoinerAskedForSnapshot(ctx, t, f)
	waitFor(t, "a first failed transfer", func() bool { return f.count() >= fetchAttempts })
	r.SetConfig(coord.Config{Epoch: 2, Protocol: ProtocolPrimaryBackup, Members: []coord.Member{{Name: "a", Incarnation: "x"}}})
	waitFor(t, "the retries to stop", func() bool { return !r.fetching.busy() && r.fetchWanted() == "" })
}

// waitFor polls cond until it holds or 20 seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
