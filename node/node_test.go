package node

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/lockstep/lockstep/internal/proctest"
	"github.com/lockstep/lockstep/kv"
	"github.com/lockstep/lockstep/storage"
)

func newNode(t *testing.T, store storage.Store, now func() int64) *Node {
	t.Helper()
	n, err := New(Config{Machine: kv.New(store, kv.Options{}), Store: store, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func args(s ...string) [][]byte {
	out := make([][]byte, len(s))
	for i, a := range s {
		out[i] = []byte(a)
	}
	return out
}

// TestSweeperDeletesExpired checks that the background sweep deletes
// expired keys through the write path, so DBSIZE drops to the live count.
func TestSweeperDeletesExpired(t *testing.T) {
	var mu sync.Mutex
	clock := int64(1_000_000)
	now := func() int64 { mu.Lock(); defer mu.Unlock(); return clock }
	n := newNode(t, storage.NewMemory(), now)
	for i := range 100 {
		ttl := "PX"
		if _, _, err := n.Write(args("SET", string(rune('a'+i%26))+string(rune('a'+i/26)), "v", ttl, "50"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := n.Write(args("SET", "keep", "v"), nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	clock += 100
	mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.RunExpirySweeper(ctx, time.Millisecond, 7)
	proctest.Eventually(t, 10*time.Second, "the sweep to leave 1 key", func() bool {
		return n.Store().Stats().Keys == 1
	})
	out, _, err := n.Read(args("GET", "keep"), nil)
	if err != nil || string(out) != "$1\r\nv\r\n" {
		t.Fatalf("GET keep = %q, %v", out, err)
	}
}

// TestGroupCommitSharesFlushes checks that concurrent writers under
// FsyncAlways all become durable and need fewer syncs than writes.
func TestGroupCommitSharesFlushes(t *testing.T) {
	store := &countingStore{Store: storage.NewMemory()}
	n, err := New(Config{Machine: kv.New(store, kv.Options{}), Store: store})
	if err != nil {
		t.Fatal(err)
	}
	if n.Fsync() != FsyncAlways {
		t.Fatalf("fsync = %v", n.Fsync())
	}
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				_, gate, err := n.Write(args("SET", string(rune('a'+w)), string(rune('0'+i%10))), nil)
				if err != nil {
					t.Error(err)
					return
				}
				if err := n.Wait(context.Background(), gate); err != nil {
					t.Error(err)
					return
				}
				if !n.commit.isDurable(gate) {
					t.Errorf("Wait returned before seq %d was durable", gate)
				}
			}
		}()
	}
	wg.Wait()
	if s := store.syncs.Load(); s == 0 || s >= 800 {
		t.Fatalf("%d syncs for 800 writes", s)
	} else {
		t.Logf("%d syncs for 800 writes", s)
	}
}

// TestFailedSyncClosesFailed: a write whose flush fails is not
// acknowledged, and the node reports that it stopped (Failed), so the
// process can exit rather than stay up refusing every request.
func TestFailedSyncClosesFailed(t *testing.T) {
	store := failingStore{storage.NewMemory()}
	n, err := New(Config{Machine: kv.New(store, kv.Options{}), Store: store})
	if err != nil {
		t.Fatal(err)
	}
	_, gate, err := n.Write([][]byte{[]byte("SET"), []byte("k"), []byte("v")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Wait(context.Background(), gate); !errors.Is(err, ErrFailed) {
		t.Fatalf("Wait after a failed flush = %v, want ErrFailed", err)
	}
	select {
	case <-n.Failed():
	default:
		t.Fatal("Failed not closed after the node stopped")
	}
}
