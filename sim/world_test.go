package sim

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lockstep/lockstep/protocol"
)

type toyMsg struct{ From, To string }

var errToyNotLeader = errors.New("toy: not the leader")

// toyCore is the least core a World can drive: the first member takes
// writes and commits each one as its runtime applies it. It ships nothing,
// so a new leader starts an empty log, which the World must catch.
type toyCore struct {
	id                     string
	cfg                    Config
	last, commit, reported uint64
}

func (c *toyCore) leader() bool                        { return len(c.cfg.Members) > 0 && c.cfg.Members[0] == c.id }
func (c *toyCore) SetConfig(cfg Config)                { c.cfg = cfg }
func (c *toyCore) Step([]byte) error                   { return nil }
func (c *toyCore) Tick()                               {}
func (c *toyCore) Hold(uint64)                         {}
func (c *toyCore) AcceptsSnapshot(string, uint64) bool { return true }
func (c *toyCore) Restored(string, uint64)             {}
func (c *toyCore) CloseEpoch(uint64, []byte) error     { return protocol.ErrNoEpochs }
func (c *toyCore) HasReady() bool                      { return c.commit > c.reported }
func (c *toyCore) Status() protocol.Status             { return protocol.Status{Commit: c.commit} }
func (c *toyCore) Ready() protocol.Ready {
	c.reported = c.commit
	return protocol.Ready{Commit: c.commit}
}
func (c *toyCore) Propose([]byte) (uint64, error) {
	if !c.leader() {
		return 0, errToyNotLeader
	}
	c.last++
	return c.last, nil
}

func (c *toyCore) Applied(seq uint64) {
	if c.leader() {
		c.commit = seq
	}
}

func (c *toyCore) role() (int, string) {
	switch {
	case c.leader():
		return 1, "leader"
	case c.cfg.Joining == c.id:
		return 3, "joiner"
	}
	for _, m := range c.cfg.Members {
		if m == c.id {
			return 2, "follower"
		}
	}
	return 0, "none"
}

type toyWorld = World[toyMsg, *toyCore]

// newToyWorld returns a world of three toy replicas whose master is
// master, or Reconfigure with joiners promoted at once.
func newToyWorld(seed uint64, tr *Trace, stats *WorldStats, master func(w *toyWorld) error) *toyWorld {
	rng := NewRand(seed)
	var w *toyWorld
	rules := Rules[toyMsg, *toyCore]{
		Protocol: Protocol[toyMsg, *toyCore]{
			New:    func(id string, _ uint64) *toyCore { return &toyCore{id: id} },
			Encode: func(b []byte, m toyMsg) []byte { return append(append(append(b, m.From...), 0), m.To...) },
			Decode: func(b []byte) (toyMsg, error) {
				from, to, _ := strings.Cut(string(b), "\x00")
				return toyMsg{From: from, To: to}, nil
			},
			To: func(m toyMsg) string { return m.To },
		},
		From:         func(m toyMsg) string { return m.From },
		Event:        func(toyMsg) string { return "toy" },
		Role:         func(c *toyCore) (int, string) { return c.role() },
		Complete:     func(c *toyCore) bool { return c.leader() },
		CheckNeed:    func(*Replica[*toyCore], string) error { return nil },
		CheckCommit:  func(*Replica[*toyCore], uint64) error { return nil },
		Install:      func(*Replica[*toyCore], string, *KVSnapshot) error { return nil },
		CheckPropose: func(_ *Replica[*toyCore], err error) (bool, error) { return err == nil, nil },
		Read: func(c *Client[*Replica[*toyCore]], key string) {
			if n := w.By[w.Cfg.Members[0]]; n.Alive {
				w.Hist.Return(w.Hist.Invoke(c.ID, KVInput{Op: KVGet, Key: key}), KVOutput{Value: n.KV[key]})
			}
		},
		Master: func() error { return master(w) },
		Check:  func() error { return nil },
		Final: func() error {
			if c := w.Waiting(); c != nil {
				return Violation("client %d still waits", c.ID)
			}
			return nil
		},
	}
	params := WorldParams{Nodes: 3, Clients: 3, POp: 0.3, PApply: ApplySpeeds(rng, 3), PTick: 0.5,
		PCrash: 0.02, PReset: 0.01, PCut: 0.01, CfgDelay: 3, Detect: 5, Restart: 20, Snap: 2, TornCrash: true}
	w = NewWorld(rng, tr, rules, params, stats)
	return w
}

func reconfigure(w *toyWorld) error {
	w.Reconfigure(func(*Replica[*toyCore]) bool { return true }, "promote %s")
	return nil
}

// TestWorld runs toy worlds through crashes of followers, removals,
// restarts and promotions, and checks that their clients' histories are
// linearizable, that nothing is left pending, and that a seed replays.
func TestWorld(t *testing.T) {
	var total WorldStats
	run := func(seed uint64, tr *Trace) error {
		var stats WorldStats
		w := newToyWorld(seed, tr, &stats, reconfigure)
		if err := w.Run(500, 100); err != nil {
			return err
		}
		if n := w.Settle(); n != 0 {
			return fmt.Errorf("%d operations pending", n)
		}
		total.Add(stats)
		return CheckLinearizable(&w.Hist, 10*time.Second, "")
	}
	for seed := uint64(1); seed <= 20; seed++ {
		if err := run(seed, nil); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
	if total.Writes == 0 || total.Crashes[2] == 0 || total.Restarts == 0 || total.Configs < 3*total.Restarts || total.Crashes[1] != 0 {
		t.Fatalf("the faults did not fire as they should: %+v", total)
	}
	if err := Replays(3, 100, run); err != nil {
		t.Fatal(err)
	}
}

// TestWorldCatchesSplitHistory checks that the oracle is not blind: a
// master that makes a replica without the log the leader sends writes to
// it must be caught committing another entry at a committed seq.
func TestWorldCatchesSplitHistory(t *testing.T) {
	var stats WorldStats
	w := newToyWorld(1, nil, &stats, func(w *toyWorld) error {
		if w.Step == 50 {
			w.Publish(Config{Members: []string{"n2", "n1", "n3"}}, "swap")
		}
		return nil
	})
	w.Params.PCrash, w.Params.PReset, w.Params.PCut = 0, 0, 0
	err := w.Run(400, 100)
	if !errors.Is(err, ErrInvariant) {
		t.Fatalf("a split history gives %v, want an invariant violation", err)
	}
	t.Log(err)
}
