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
