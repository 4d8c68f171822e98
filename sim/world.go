package sim

import (
	"fmt"
	"math/rand/v2"

	"github.com/lockstep/lockstep/protocol"
)

// Config is the configuration every lockstep core takes: an epoch, the
// members in order (Members[0] is the head or primary, the one that takes
// writes) and at most one joiner catching up.
type Config = protocol.Config

// Rules are what a World needs of one protocol: how to drive its core
// (Protocol, From, Event, Role, Complete) and the world rules in which the
// protocols differ, each a hook the World calls at its point of a step.
// Every hook may draw from World.Rng only in a fixed order, and none may
// be left nil unless its comment says so.
type Rules[M any, R protocol.Core] struct {
	// Protocol gives New (called with applied 0, or a kept state's seq), the codec every message
	// passes through, and To.
	Protocol[M, R]
	// From names the sender of a message.
	From func(m M) string
	// Event describes a delivered message in the trace.
	Event func(m M) string
	// Role is the replica's role in its own view, as an index for
	// WorldStats and a name for the trace. Index 0 is a replica outside
	// the configuration, as RoleNone is in every lockstep core.
	Role func(core R) (int, string)
	// Complete reports whether the replica holds every entry that may
	// have been committed; a crash never takes the last complete member.
	Complete func(core R) bool

	// CheckNeed checks a replica's request for a snapshot from src.
	CheckNeed func(n *Replica[R], src string) error
	// CheckCommit checks a replica's report that everything up to seq is
	// committed, before the World records it.
	CheckCommit func(n *Replica[R], seq uint64) error
	// Committed, if not nil, checks the entry with digest that n
	// committed at seq against the other replicas.
	Committed func(n *Replica[R], seq, digest uint64) error
	// Member, if not nil, tells whether an entry n applies must be the
	// one committed at its seq (a replica the master removed may hold
	// entries never committed); nil means always.
	Member func(n *Replica[R]) bool
	// Install installs a snapshot that src took for n: it asks the core,
	// restores n's store (Replica.Restore), tells the core and drains it.
	Install func(n *Replica[R], src string, snap *KVSnapshot) error
	// Read lets client c read key where the protocol serves reads.
	Read func(c *Client[*Replica[R]], key string)
	// CheckPropose checks the outcome err of a Propose at n and reports
	// whether the write went ahead; a refusal is no violation.
	CheckPropose func(n *Replica[R], err error) (bool, error)
	// Started, if not nil, sees every new incarnation of a replica before
	// its core learns the configuration.
	Started func(n *Replica[R])
	// Master plays the coordinator once per step (see World.Reconfigure).
	Master func() error
	// Check checks the invariants after every step, Final the liveness
	// after the quiet steps.
	Check, Final func() error
}

// WorldParams are the knobs of a World that a seed draws.
type WorldParams struct {
	Nodes, Clients int       // replicas (all members at first) and clients
	POp            float64   // per idle client per step: start an operation
	PApply         []float64 // per node (by index) per step: the runtime applies some queued entries
	PTick          float64   // per node per step
	PCrash         float64   // per step: crash a replica
	PSuspect       float64   // per step: the master takes a live replica for crashed
	PReset         float64   // per step: reset one link
	PCut           float64   // per step: cut one link, or one node, for a while
	CfgDelay       int64     // most steps a new configuration takes to reach a node
	Detect         int64     // most steps the master takes to notice a crash
	Restart        int64     // most steps a removed crashed node stays down
	Snap           int64     // most steps between taking a snapshot and installing it
	// TornCrash makes a crash lose what is in flight from the node on a
	// random half of its links, as a crash in the middle of sending does.
	TornCrash bool
	// KeepClean makes a crashed replica whose state was all committed
	// (Status.Commit reached what it applied, as a graceful stop waits
	// for) restart on that state, not empty, half of the time: the
	// restart a durable node makes after a clean stop.
	KeepClean bool
}

// MaxRoles bounds the role indexes that WorldStats counts by.
const MaxRoles = 8

// WorldStats counts what a World did, to show the faults were exercised.
// A simulation's statistics embed it and add their protocol's own.
type WorldStats struct {
	Crashes    [MaxRoles]int // by role at the time of the crash
	Suspicions [MaxRoles]int // live replicas the master took for crashed, by role
	Restarts   int
	Kept       int // restarts on a state kept from a clean stop (Params.KeepClean)
	Configs    int
	Snapshots  int // counted by Rules.Install
	Resets     int
	Cuts       int
	Writes     int
	Reads      int // counted by Rules.Read
	WindowFull int // counted by Rules.CheckPropose
	Stale      int
	Settled    int // writes whose client gave up, committed later
	Lost       int // writes whose client gave up, never committed
}

// Add adds o's counts to s.
func (s *WorldStats) Add(o WorldStats) {
	for i := range s.Crashes {
		s.Crashes[i] += o.Crashes[i]
		s.Suspicions[i] += o.Suspicions[i]
	}
	s.Restarts += o.Restarts
	s.Kept += o.Kept
	s.Configs += o.Configs
	s.Snapshots += o.Snapshots
	s.Resets += o.Resets
	s.Cuts += o.Cuts
	s.Writes += o.Writes
	s.Reads += o.Reads
	s.WindowFull += o.WindowFull
	s.Stale += o.Stale
	s.Settled += o.Settled
	s.Lost += o.Lost
}

// World is one simulated group of replicas of a log-shipping core, with
// the rules that lockstep's chain and primary-backup simulations share: a
// runtime around each core that applies entries to a KVStore at its own
// pace, a network with resets and cuts, crashes and restarts, a master
// that publishes configurations, snapshot transfers, and clients whose
// writes go to Members[0] and whose history porcupine checks. What the
// protocols do differently is in Rules.
//
// One seed drives every choice, through Rng in a fixed order; nothing
// iterates over a map. A World is not safe for concurrent use.
type World[M any, R protocol.Core] struct {
	Rules   Rules[M, R]
	Params  WorldParams
	Rng     *rand.Rand  // the one source of every choice
	Trace   *Trace      // nil: no trace
	Stats   *WorldStats // where the World counts
	Step    int64
	Faulty  bool // the step may inject faults and start operations
	Net     *Network[M]
	Links   LinkFaults[M] // resets and cuts
	Names   []string      // of the nodes, in order
	Nodes   []*Replica[R]
	By      map[string]*Replica[R] // Nodes by name, for lookups only
	Cfg     Config                 // the master's configuration
	Size    int                    // members the master wants
	Clients []*Client[*Replica[R]]
	Hist    History // the clients' operations, for porcupine
	Writes  *Writes // the oracle of the writes in Hist

	snaps []snapTransfer[R]
}

// NewWorld returns a world of params.Nodes replicas, all members in epoch
// 1, and params.Clients idle clients, that counts into stats (which a
// simulation's own statistics usually embed). It draws the network's
// delays, 1 to at most 12 steps, from rng after whatever the caller drew,
// so that a seed gives the same world.
func NewWorld[M any, R protocol.Core](rng *rand.Rand, trace *Trace, rules Rules[M, R], params WorldParams, stats *WorldStats) *World[M, R] {
	w := &World[M, R]{Rules: rules, Params: params, Rng: rng, Trace: trace, Stats: stats, By: map[string]*Replica[R]{}}
	w.Writes = NewWrites(&w.Hist)
	w.Net = NewNetwork[M](rng, NetworkOptions{MinDelay: 1, MaxDelay: 1 + int64(rng.IntN(1+rng.IntN(12)))})
	w.Links = LinkFaults[M]{Net: w.Net, Rng: rng, Trace: trace}
	cfg := Config{Epoch: 1}
	for i := range params.Nodes {
		n := w.newReplica(fmt.Sprintf("n%d", i+1), i, 0)
		w.started(n)
		w.Nodes = append(w.Nodes, n)
		w.By[n.Name] = n
		w.Names = append(w.Names, n.Name)
		cfg.Members = append(cfg.Members, n.Name)
	}
	for i := range params.Clients {
		w.Clients = append(w.Clients, &Client[*Replica[R]]{ID: i})
	}
	w.Cfg, w.Size = cfg, params.Nodes
	for _, n := range w.Nodes {
		n.Core.SetConfig(w.Cfg)
	}
	return w
}

// Run drives steps faulty steps and then quiet steps without faults or new
// client operations, checking the invariants after every step and
// liveness at the end, and returns the first violation.
func (w *World[M, R]) Run(steps, quiet int) error {
	for _, n := range w.Nodes {
		if err := w.Drain(n); err != nil {
			return err
		}
	}
	for w.Step = 1; w.Step <= int64(steps+quiet); w.Step++ {
		w.Trace.SetStep(w.Step)
		w.Faulty = w.Step <= int64(steps)
		if w.Step == int64(steps)+1 {
			w.Links.HealAll()
		}
		if err := w.oneStep(); err != nil {
			return fmt.Errorf("step %d: %w", w.Step, err)
		}
	}
	return w.Rules.Final()
}

func (w *World[M, R]) oneStep() error {
	if w.Faulty {
		w.faults()
	}
	for _, f := range []func() error{w.Rules.Master, w.deliverConfigs, w.deliverMessages, w.snapshots, w.clients, w.applyAndTick} {
		if err := f(); err != nil {
			return err
		}
	}
	return w.Rules.Check()
}

// ApplySpeeds draws how eagerly each of nodes runtimes applies, for
// WorldParams.PApply; in half the seeds one node is much slower than the
// rest, so that its peers must hold entries for it and windows fill.
func ApplySpeeds(rng *rand.Rand, nodes int) []float64 {
	p := make([]float64, nodes)
	for i := range p {
		p[i] = 0.3 + 0.7*rng.Float64()
	}
	if rng.IntN(2) == 0 {
		p[rng.IntN(nodes)] = 0.02 + 0.1*rng.Float64()
	}
	return p
}
