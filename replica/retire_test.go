package replica

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lockstep/lockstep/coord"
)

// retireReplica is a chain replica n1 on a store that claims durability,
// in a configuration of members, with every message dropped, after one
// write at the head.
func retireReplica(t *testing.T, members ...string) (*Replica, *syncedStore) {
	t.Helper()
	r, store := durableReplica(t, members...)
	if _, seq, err := r.propose("", 0, toArgs("SET", "k", "v"), nil); err != nil || seq != 1 {
		t.Fatalf("propose: seq %d, %v", seq, err)
	}
	r.Flush(t.Context())
	return r, store
}

// TestRetireKeepsCommittedState: a replica whose writes are all committed
// retires at its applied seq, with the store synced that far.
func TestRetireKeepsCommittedState(t *testing.T) {
	r, store := retireReplica(t, "n1")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	seq, _, err := r.Retire(ctx)
	if err != nil || seq != 1 {
		t.Fatalf("Retire = %d, %v; want 1", seq, err)
	}
	if store.syncedSeq() < 1 {
		t.Fatal("Retire returned before the store was synced")
	}
}

// TestRetireWaitsForCommit: a head whose successor never acknowledged its
// write holds a state that is not known to be committed: Retire must not
// vouch for it.
func TestRetireWaitsForCommit(t *testing.T) {
	r, _ := retireReplica(t, "n1", "n2")
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if seq, _, err := r.Retire(ctx); !errors.Is(err, ErrNotRetired) {
		t.Fatalf("Retire = %d, %v; want ErrNotRetired", seq, err)
	}
}

// TestRetireAcrossForcedRecovery: a replica that ran on both sides of a
// forced recovery cannot say which history its state belongs to (the
// recovery may have lost writes it applied as committed), so it does not
// vouch for it.
func TestRetireAcrossForcedRecovery(t *testing.T) {
	r, _ := retireReplica(t, "n1")
	r.InstallConfig(t.Context(), coord.Config{Epoch: 2, Protocol: ProtocolChain, Forced: 1,
		Members: []coord.Member{{Name: "n1", Incarnation: "i"}}})
	if seq, _, err := r.Retire(t.Context()); !errors.Is(err, ErrNotRetired) {
		t.Fatalf("Retire = %d, %v; want ErrNotRetired", seq, err)
	}
}
