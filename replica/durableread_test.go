package replica

import (
	"strings"
	"sync"
	"testing"

	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/storage"
)

// syncedStore is a memory store that claims durability and remembers how
// far its last Sync reached.
type syncedStore struct {
	storage.Store
	mu     sync.Mutex
	synced uint64
}

func (s *syncedStore) Durable() bool { return true }

func (s *syncedStore) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.synced = s.Store.AppliedSeq()
	return nil
}

func (s *syncedStore) syncedSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.synced
}

// durableReplica is chain replica n1, syncing before it sends, on a store
// that claims durability, in a configuration of members (incarnation
// "i"), with every message it sends dropped.
func durableReplica(t *testing.T, members ...string) (*Replica, *syncedStore) {
	t.Helper()
	store := &syncedStore{Store: storage.NewMemory()}
	r, err := New(Options{Name: "n1", Incarnation: "i", Machine: newMachine(t, store), Store: store, SyncBeforeSend: true})
	if err != nil {
		t.Fatal(err)
	}
	r.Attach(dropAll{}, nil, nil)
	cfg := coord.Config{Epoch: 1, Protocol: ProtocolChain}
	for _, m := range members {
		cfg.Members = append(cfg.Members, coord.Member{Name: m, Incarnation: "i"})
	}
	r.InstallConfig(t.Context(), cfg)
	return r, store
}

// TestTailReadIsDurable: a chain's tail answers reads from what it has
// applied, which need not be on its disk yet; the reply must wait for the
// sync, since after a total outage the group may re-form from this
// tail's disk, and a write a client has read must not be lost.
func TestTailReadIsDurable(t *testing.T) {
	r, store := durableReplica(t, "n1")
	// An update applied, as entries from a predecessor are, and not synced
	// yet.
	u, err := r.sm.Prepare(toArgs("SET", "k", "v"), &r.env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.sm.Apply(1, u, nil); err != nil {
		t.Fatal(err)
	}
	if store.syncedSeq() != 0 {
		t.Fatal("the update was synced before the read")
	}
	out, _, err := r.Read(toArgs("GET", "k"), nil)
	if err != nil || string(out) != "$1\r\nv\r\n" {
		t.Fatalf("GET k = %q, %v", out, err)
	}
	if got := store.syncedSeq(); got < 1 {
		t.Fatalf("the tail answered a read of seq 1 with only %d synced", got)
	}
}

// TestSingleMemberCommitIsDurable: a single member's commit point is what
// it applied, which nothing else made durable; the replies it releases
// must wait for a sync (a commit point already covered by an earlier
// sync is released without one).
func TestSingleMemberCommitIsDurable(t *testing.T) {
	r, store := durableReplica(t, "n1")
	if _, seq, err := r.propose("", 0, toArgs("SET", "k", "v"), nil); err != nil || seq != 1 {
		t.Fatalf("propose: seq %d, %v", seq, err)
	}
	r.Flush(t.Context())
	if c := r.commit.seq.Load(); c != 1 {
		t.Fatalf("commit point %d after Flush, want 1", c)
	}
	if got := store.syncedSeq(); got < 1 {
		t.Fatalf("a single member released seq 1 with only %d synced", got)
	}
}

// TestRetainedLogInInfo: a replica's INFO shows the history it retains
// for members that rejoin, which grows with writes up to --log-retention.
func TestRetainedLogInInfo(t *testing.T) {
	store := &syncedStore{Store: storage.NewMemory()}
	r, err := New(Options{Name: "n1", Incarnation: "i", Machine: newMachine(t, store), Store: store,
		Core: CoreOptions{RetainBytes: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	r.Attach(dropAll{}, nil, nil)
	r.InstallConfig(t.Context(), coord.Config{Epoch: 1, Protocol: ProtocolChain, Members: []coord.Member{{Name: "n1", Incarnation: "i"}}})
	for range 3 {
		if _, _, err := r.propose("", 0, toArgs("SET", "k", "v"), nil); err != nil {
			t.Fatal(err)
		}
	}
	r.Flush(t.Context())
	info, _ := r.AppendInfo("replication", nil)
	for _, want := range []string{"lockstep_log_retained:3\r\n", "lockstep_log_oldest_seq:0\r\n"} {
		if !strings.Contains(string(info), want) {
			t.Errorf("INFO replication lacks %q:\n%s", want, info)
		}
	}
	if st := r.Status(); st.RetainedBytes == 0 || st.Pending != 0 {
		t.Errorf("status %+v: want retained bytes and nothing pending", st)
	}
}
