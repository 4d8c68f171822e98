package replica

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/dedup"
	"github.com/lockstep/lockstep/kv"
	"github.com/lockstep/lockstep/statemachine"
	"github.com/lockstep/lockstep/storage"
	"github.com/lockstep/lockstep/transport/memnet"
)

// keptWrites is how many writes the kept state of these tests holds: keys
// k1..k3 = v1..v3 at seqs 1..3.
const keptWrites = 3

// keptMachine is the state a process finds in its data directory after a
// total outage: a store that holds keptWrites applied writes, and the
// machine over it. wrap, if set, stands between kv and the dedup table.
func keptMachine(t *testing.T, wrap func(*kv.Machine) statemachine.StateMachine) (*dedup.Machine, storage.Store) {
	t.Helper()
	store := storage.NewMemory()
	inner := statemachine.StateMachine(kv.New(store, kv.Options{}))
	if wrap != nil {
		inner = wrap(inner.(*kv.Machine))
	}
	m, err := dedup.Wrap(inner, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= keptWrites; i++ {
		u, err := m.Prepare(toArgs("SET", fmt.Sprint("k", i), fmt.Sprint("v", i)), fixedEnv{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Apply(uint64(i), u, nil); err != nil {
			t.Fatal(err)
		}
	}
	return m, store
}

// newKept is a replica of proto named name (incarnation "i") on kept
// state; recovered says whether it knows it kept it (Options.Recovered).
func newKept(t *testing.T, proto, name string, recovered bool, wrap func(*kv.Machine) statemachine.StateMachine) *Replica {
	t.Helper()
	m, store := keptMachine(t, wrap)
	r, err := New(Options{Name: name, Incarnation: "i", Protocol: proto, Machine: m, Store: store,
		Recovered: recovered, Tick: 5 * time.Millisecond, WaitTimeout: 20 * time.Second,
		Core: CoreOptions{CheckpointInterval: 5 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRecoveredJoinerStops checks the rule that keeps state a process
// kept across a total outage out of a group that was re-formed without
// it. That state may hold writes the group never committed, at seqs the
// group has since given to other writes; as a joiner it would say Hello
// from its applied seq and keep them under everything it receives. So a
// Recovered replica that a configuration names as the joiner stops with
// ErrStaleState (its process must start again empty), while one named a
// member runs on its state, and so does a joiner that was not Recovered:
// only the flag decides, on the same state.
func TestRecoveredJoinerStops(t *testing.T) {
	me, other := coord.Member{Name: "a", Incarnation: "i"}, coord.Member{Name: "b", Incarnation: "x"}
	for _, proto := range []string{ProtocolChain, ProtocolPrimaryBackup, ProtocolCheckpoint} {
		t.Run(proto, func(t *testing.T) {
			joiner := coord.Config{Epoch: 2, Protocol: proto, Members: []coord.Member{other}, Joining: &me}
			member := coord.Config{Epoch: 2, Protocol: proto, Members: []coord.Member{other, me}}
			install := func(recovered bool, cfg coord.Config) *Replica {
				r := newKept(t, proto, "a", recovered, nil)
				r.Attach(dropAll{}, nil, nil)
				r.InstallConfig(context.Background(), cfg)
				return r
			}

			r := install(true, joiner)
			if err := r.Err(); !errors.Is(err, ErrStaleState) || !errors.Is(err, ErrFailed) || !closed(r.Failed()) {
				t.Fatalf("Recovered replica made the joiner: Err = %v, Failed closed %t; want ErrStaleState and Failed closed", err, closed(r.Failed()))
			}
			if r := install(true, member); r.Err() != nil || r.Epoch() != 2 || r.Role() == RoleJoining {
				t.Fatalf("Recovered replica made a member: Err = %v, epoch %d, role %v; want it running in epoch 2", r.Err(), r.Epoch(), r.Role())
			}
			if r := install(false, joiner); r.Err() != nil || r.Epoch() != 2 || r.Role() != RoleJoining {
				t.Fatalf("replica not Recovered made the joiner: Err = %v, epoch %d, role %v; want it joining in epoch 2", r.Err(), r.Epoch(), r.Role())
			}
		})
	}
}

// writesOnly is a machine whose SpeculativeSeq counts only the writes it
// applied since tracking began, which is all statemachine.DeltaTracker
// promises. kv also counts the whole state held when tracking began as
// speculative; with writesOnly, the runtime's own hold on kept state is
// all that keeps a read of it from going out early.
type writesOnly struct {
	*kv.Machine
	from uint64 // the applied seq when tracking last began
}

func (w *writesOnly) TrackChanges(on bool) {
	w.Machine.TrackChanges(on)
	w.from = w.Machine.AppliedSeq()
}

func (w *writesOnly) SpeculativeSeq(args [][]byte) uint64 {
	if s := w.Machine.SpeculativeSeq(args); s > w.from {
		return s
	}
	return 0
}

// TestRecoveredPrimaryHoldsKeptReads: a checkpoint primary executes
// writes before any backup has them, and a restart loses its record of
// which of its state is still speculative. Re-formed after a total
// outage, it must not answer a read of the state it kept before the
// commit point reaches that state: until a backup holds it, a write the
// read observes may exist nowhere else and be lost with this process.
// The reply to such a read is held (OnCommit, through which the server
// releases replies) while the only backup is cut off, and released once
// the backup has caught up and acknowledged.
func TestRecoveredPrimaryHoldsKeptReads(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap func(*kv.Machine) statemachine.StateMachine
	}{
		{"kv", nil},
		{"writes-only-tracker", func(m *kv.Machine) statemachine.StateMachine { return &writesOnly{Machine: m} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			net := memnet.New(0)
			defer net.Close()
			cfg := coord.Config{Epoch: 1, Protocol: ProtocolCheckpoint}
			var group []*Replica
			for _, name := range []string{"a", "b"} {
				r := newKept(t, ProtocolCheckpoint, name, true, tc.wrap)
				ep := net.Add(name, r)
				r.Attach(ep, ep, nil)
				group = append(group, r)
				cfg.Members = append(cfg.Members, coord.Member{Name: name, Incarnation: "i"})
			}
			primary := group[0]
			net.Cut("a", "b")
			for _, r := range group {
				go r.Run(ctx)
				r.SetConfig(cfg)
			}
			waitFor(t, "a to be primary", func() bool { return primary.Role() == RolePrimary })
			checkKeptReadHeld(ctx, t, primary, func() { net.Heal("a", "b") })
		})
	}
}

// checkKeptReadHeld reads a kept key at primary, which no backup
// has acknowledged, and checks that the reply is held until heal lets a
// backup catch up, and then released at a commit point that covers the
// kept state.
func checkKeptReadHeld(ctx context.Context, t *testing.T, primary *Replica, heal func()) {
	t.Helper()
	out, gate, err := primary.Read(toArgs("GET", "k3"), nil)
	if err != nil || string(out) != "$2\r\nv3\r\n" {
		t.Fatalf("GET k3 at the primary = %q, %v; want v3 from its kept state", out, err)
	}
	released := make(chan error, 1)
	if !primary.OnCommit(gate, func(err error) { released <- err }) {
		t.Fatalf("a read of kept state was released at once (gate %d, commit %d), before any backup held that state",
			gate, primary.Status().Commit)
	}
	heal()
	select {
	case err := <-released:
		if err != nil {
			t.Fatalf("the held read ended with %v, want its release once the backup caught up", err)
		}
	case <-ctx.Done():
		t.Fatalf("the held read was never released (commit %d, gate %d)", primary.Status().Commit, gate)
	}
	if c := primary.Status().Commit; c < keptWrites {
		t.Fatalf("the read was released at commit %d, below the kept state at %d", c, keptWrites)
	}
}

// TestCleanRecoveredJoinerKeepsState: a process that stopped cleanly and
// restarted before the group removed its old incarnation keeps its state
// as a member's (Recovered) and as a clean stop's (Committed); if the
// group lives on and makes it the joiner, the state is all committed, so
// it rejoins on it instead of failing with ErrStaleState.
func TestCleanRecoveredJoinerKeepsState(t *testing.T) {
	me, other := coord.Member{Name: "a", Incarnation: "i"}, coord.Member{Name: "b", Incarnation: "x"}
	for _, proto := range []string{ProtocolChain, ProtocolPrimaryBackup} {
		t.Run(proto, func(t *testing.T) {
			m, store := keptMachine(t, nil)
			r, err := New(Options{Name: "a", Incarnation: "i", Protocol: proto, Machine: m, Store: store,
				Recovered: true, Committed: true, Tick: 5 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			r.Attach(dropAll{}, nil, nil)
			r.InstallConfig(context.Background(), coord.Config{Epoch: 2, Protocol: proto, Members: []coord.Member{other}, Joining: &me})
			if err := r.Err(); err != nil || r.Role() != RoleJoining || r.Status().Applied == 0 {
				t.Fatalf("clean Recovered replica made the joiner: Err = %v, role %v, applied %d; want it joining on its state",
					err, r.Role(), r.Status().Applied)
			}
		})
	}
}
