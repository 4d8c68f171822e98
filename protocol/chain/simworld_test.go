package chain_test

import (
	"fmt"
	"math/rand/v2"

	"github.com/lockstep/lockstep/protocol/chain"
	"github.com/lockstep/lockstep/sim"
)

// simParams are the knobs of one simulated run, all drawn from its seed.
type simParams struct {
	nodes    int // 3..5 replicas, all members at the start
	opts     chain.Options
	clients  int
	pCrash   float64   // per step
	pReset   float64   // per step: reset one link
	pCut     float64   // per step: cut one link for a while
	pOp      float64   // per idle client per step
	pApply   []float64 // per node (by index) per step: the runtime applies some queued entries
	pTick    float64   // per node per step
	cfgDelay int64     // most steps a new configuration takes to reach a node
	detect   int64     // most steps the master takes to notice a crash
	restart  int64     // most steps a removed crashed node stays down
	snap     int64     // most steps between taking a snapshot and installing it
	keep     bool      // a replica crashed with all it applied committed may restart on that state
}

func drawParams(rng *rand.Rand) simParams {
	w := 4 + rng.IntN(29)
	nodes := 3 + rng.IntN(3)
	return simParams{
		nodes: nodes,
		opts: chain.Options{
			Window:      w,
			JoinWindow:  1 + rng.IntN(2*w),
			MaxBatch:    1 + rng.IntN(8),
			ResendTicks: 2 + rng.IntN(9),
			HelloTicks:  2 + rng.IntN(9),
			RetainBytes: rng.IntN(2) * rng.IntN(400),
		},
		clients:  2 + rng.IntN(3),
		pCrash:   0.001 + 0.01*rng.Float64()*rng.Float64(),
		pReset:   0.03 * rng.Float64(),
		pCut:     0.01 * rng.Float64(),
		pOp:      0.1 + 0.3*rng.Float64(),
		pApply:   sim.ApplySpeeds(rng, nodes),
		pTick:    0.1 + 0.5*rng.Float64(),
		cfgDelay: int64(rng.IntN(1 + rng.IntN(16))),
		detect:   2 + int64(rng.IntN(10)),
		restart:  5 + int64(rng.IntN(60)),
		snap:     int64(rng.IntN(2) * rng.IntN(20)),
		keep:     rng.IntN(4) != 0,
	}
}

// world returns the knobs of the sim.World: a chain's master suspects no
// live replica, and a crash loses only what is in flight to the node.
func (p simParams) world() sim.WorldParams {
	return sim.WorldParams{
		Nodes: p.nodes, Clients: p.clients,
		POp: p.pOp, PApply: p.pApply, PTick: p.pTick,
		PCrash: p.pCrash, PReset: p.pReset, PCut: p.pCut,
		CfgDelay: p.cfgDelay, Detect: p.detect, Restart: p.restart, Snap: p.snap,
		KeepClean: p.keep,
	}
}

type (
	// simNode is one replica: a Core and the runtime around it.
	simNode = sim.Replica[*chain.Core]
	// simClient runs one operation at a time; a chain's reads are
	// answered at once by the tail.
	simClient = sim.Client[*simNode]
)

// world is one simulated chain group (see sim.World); its master
// removes crashed replicas, adds a restarted one as joiner, and promotes
// the joiner once it is caught up.
type world struct {
	*sim.World[chain.Message, *chain.Core]
	p     simParams
	stats simStats
}

// simStats counts what happened, to show the faults were exercised.
type simStats struct {
	sim.WorldStats // Crashes by chain.Role
	promotions     int
	logJoins       int // joiners on kept state promoted without a snapshot
}

func (s *simStats) add(o simStats) {
	s.WorldStats.Add(o.WorldStats)
	s.promotions += o.promotions
	s.logJoins += o.logJoins
}

// String summarizes the stats for logs.
func (s simStats) String() string {
	return fmt.Sprintf("crashes head %d middle %d tail %d joiner %d; restarts %d configs %d promotions %d (from a kept state by log %d of %d) snapshots %d resets %d cuts %d; writes %d reads %d window-full %d stale %d; given up %d (committed later) + %d (lost)",
		s.Crashes[chain.RoleHead], s.Crashes[chain.RoleMiddle], s.Crashes[chain.RoleTail], s.Crashes[chain.RoleJoining],
		s.Restarts, s.Configs, s.promotions, s.logJoins, s.Kept, s.Snapshots, s.Resets, s.Cuts, s.Writes, s.Reads, s.WindowFull, s.Stale, s.Settled, s.Lost)
}

func newWorld(seed uint64, trace *sim.Trace) *world {
	rng := sim.NewRand(seed)
	w := &world{p: drawParams(rng)}
	w.World = sim.NewWorld(rng, trace, w.rules(), w.p.world(), &w.stats.WorldStats)
	w.Trace.Logf("params %+v", w.p)
	return w
}

// rules are the chain's rules of the simulated world (see simnode_test.go).
func (w *world) rules() sim.Rules[chain.Message, *chain.Core] {
	return sim.Rules[chain.Message, *chain.Core]{
		Protocol: protocol(w.p.opts),
		From:     func(m chain.Message) string { return m.From },
		Event: func(m chain.Message) string {
			return fmt.Sprintf("%s e%d seq %d (%d entries)", m.Type, m.Epoch, m.Seq, len(m.Entries))
		},
		Role:         func(c *chain.Core) (int, string) { r := c.Detail().Role; return int(r), r.String() },
		Complete:     func(c *chain.Core) bool { return c.Detail().Complete },
		CheckNeed:    w.checkNeed,
		CheckCommit:  w.checkCommit,
		Install:      w.install,
		Read:         w.read,
		CheckPropose: w.checkPropose,
		Master:       w.master,
		Check:        w.check,
		Final:        w.finalCheck,
	}
}

var violation = sim.Violation
