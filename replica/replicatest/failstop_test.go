package replicatest

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lockstep/lockstep/replica"
	"github.com/lockstep/lockstep/storage"
)

// TestFailedReplicaStaysSilent checks that a replica whose store failed
// one Sync stays stopped when later Syncs work again, as they may on a
// real disk (the failed writeback's pages are marked clean, so the next
// fsync has nothing to report): it must send no more acks, so the write
// it could not persist is not acknowledged through it. The failing
// replica is the last one, whose ack commits writes; the group commits
// the write once reconfigured without it.
func TestFailedReplicaStaysSilent(t *testing.T) {
	for _, protocol := range protocols {
		t.Run(protocol, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
			defer cancel()
			bad := &faultyStore{Memory: storage.NewMemory()}
			c := startWith(t, ctx, Options{Protocol: protocol, Seed: testSeed(t), NewStore: storeFor("r3", bad)})
			head := c.Node("r1")
			expect(t, "write before the fault", "+OK")(head.Write(ctx, "SET", "k", "1"))

			bad.syncFails.Store(1)
			pctx, pcancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer pcancel()
			if v, err := head.Write(pctx, "SET", "k", "2"); isValue(v, err) {
				t.Fatalf("a write was acknowledged (%s) though r3 could not sync it", show(v, err))
			}
			if err := c.Node("r3").Replica.Err(); !errors.Is(err, replica.ErrStorage) {
				t.Fatalf("r3 after a failed sync: Err = %v, want ErrStorage", err)
			}

			rest := []string{"r1", "r2"}
			reconfigure(t, ctx, c, View{Members: rest, To: rest})
			expect(t, "write after the failover", "+OK")(head.Write(ctx, "SET", "j", "1"))
			expect(t, "the write r3 could not sync, after the failover", "$2")(c.Node(reader(protocol, rest)).Read(ctx, "GET", "k"))
		})
	}
}

// TestReadErrorFailsReplica checks that a replica that cannot read its
// store stops rather than answer: the client's read gets an error, the
// replica fails with ErrStorage and takes no more writes, and once the
// group is reconfigured without it another replica answers the read.
func TestReadErrorFailsReplica(t *testing.T) {
	for _, protocol := range protocols {
		t.Run(protocol, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
			defer cancel()
			members := []string{"r1", "r2", "r3"}
			victim := reader(protocol, members)
			bad := &faultyStore{Memory: storage.NewMemory()}
			c := startWith(t, ctx, Options{Protocol: protocol, Seed: testSeed(t), NewStore: storeFor(victim, bad)})
			expect(t, "write before the fault", "+OK")(c.Node("r1").Write(ctx, "SET", "k", "1"))

			bad.getFails.Store(true)
			v := c.Node(victim)
			if r, err := v.Do(ctx, "GET", "k"); isValue(r, err) {
				t.Fatalf("%s answered %s from a store it cannot read", victim, show(r, err))
			}
			if err := v.Replica.Err(); !errors.Is(err, replica.ErrStorage) || !errors.Is(err, syscall.EIO) {
				t.Fatalf("%s after a read error: Err = %v, want ErrStorage wrapping EIO", victim, err)
			}
			if r, err := v.Write(ctx, "SET", "k", "2"); isValue(r, err) {
				t.Fatalf("%s acknowledged a write (%s) after it failed", victim, show(r, err))
			}

			rest := slices.DeleteFunc(slices.Clone(members), func(n string) bool { return n == victim })
			reconfigure(t, ctx, c, View{Members: rest, To: rest})
			expect(t, "read at the new "+reader(protocol, rest), "$1")(c.Node(reader(protocol, rest)).Do(ctx, "GET", "k"))
		})
	}
}

// storeFor gives the replica called name the store bad, and every other
// one an in-memory store.
func storeFor(name string, bad storage.Store) func(string) (storage.Store, error) {
	return func(n string) (storage.Store, error) {
		if n == name {
			return bad, nil
		}
		return storage.NewMemory(), nil
	}
}

// faultyStore is an in-memory store that stands for a durable one whose
// disk misbehaves on command: the next syncFails Syncs fail, and every Get
// fails while getFails is set. Unlike Pebble it does not stay failed, as
// a store without that guard would not.
type faultyStore struct {
	*storage.Memory
	syncFails atomic.Int32
	getFails  atomic.Bool
}

var errInjected = errors.New("replicatest: injected disk error")

// Durable is true, so the replica syncs before it sends.
func (s *faultyStore) Durable() bool { return true }

func (s *faultyStore) Sync() error {
	for {
		n := s.syncFails.Load()
		if n <= 0 {
			return s.Memory.Sync()
		}
		if s.syncFails.CompareAndSwap(n, n-1) {
			return errors.Join(errInjected, syscall.EIO)
		}
	}
}

func (s *faultyStore) Get(key []byte) (storage.Entry, bool, error) {
	if s.getFails.Load() {
		return storage.Entry{}, false, errors.Join(errInjected, syscall.EIO)
	}
	return s.Memory.Get(key)
}
