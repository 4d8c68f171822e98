package pb_test

import (
	"fmt"
	"math/rand/v2"

	"github.com/lockstep/lockstep/protocol/pb"
	"github.com/lockstep/lockstep/sim"
)

// simParams are the knobs of one simulated run, all drawn from its seed.
type simParams struct {
	nodes    int // 2..4 replicas, all members at the start: a primary and 1..3 backups
	opts     pb.Options
	clients  int
	pCrash   float64   // per step
	pSuspect float64   // per step: the master takes a live node for crashed
	pReset   float64   // per step: reset one link
	pCut     float64   // per step: cut one link for a while
	pOp      float64   // per idle client per step
	pApply   []float64 // per node (by index) per step: the runtime applies some queued entries (sim.ApplySpeeds)
	pTick    float64   // per node per step
	cfgDelay int64     // most steps a new configuration takes to reach a node
	detect   int64     // most steps the master takes to notice a crash
	restart  int64     // most steps a removed crashed node stays down
	snap     int64     // most steps between taking a snapshot and installing it
	report   int64     // steps between a node's status reports to the master
	keep     bool      // a replica crashed with all it applied committed may restart on that state
}

func drawParams(rng *rand.Rand) simParams {
	nodes := 2 + rng.IntN(3)
	return simParams{
		nodes: nodes,
		opts: pb.Options{
			Window:      4 + rng.IntN(29),
			MaxBatch:    1 + rng.IntN(8),
			ResendTicks: 2 + rng.IntN(9),
			HelloTicks:  2 + rng.IntN(9),
			RetainBytes: rng.IntN(2) * rng.IntN(400),
		},
		clients:  2 + rng.IntN(3),
		pCrash:   0.001 + 0.01*rng.Float64()*rng.Float64(),
		pSuspect: 0.004 * float64(rng.IntN(2)) * rng.Float64(),
		pReset:   0.03 * rng.Float64(),
		pCut:     0.01 * rng.Float64(),
		pOp:      0.1 + 0.3*rng.Float64(),
		pApply:   sim.ApplySpeeds(rng, nodes),
		pTick:    0.1 + 0.5*rng.Float64(),
		cfgDelay: int64(rng.IntN(1 + rng.IntN(16))),
		detect:   2 + int64(rng.IntN(10)),
		restart:  5 + int64(rng.IntN(60)),
		snap:     int64(rng.IntN(2) * rng.IntN(20)),
		report:   1 + int64(rng.IntN(2)*rng.IntN(80)),
		keep:     rng.IntN(4) != 0,
	}
}

// world returns the knobs of the sim.World. A crashed primary may have
// sent its last entries to some backups and not others (TornCrash), so
// that a failover finds backups behind and ahead of the new primary.
func (p simParams) world() sim.WorldParams {
	return sim.WorldParams{
		Nodes: p.nodes, Clients: p.clients,
		POp: p.pOp, PApply: p.pApply, PTick: p.pTick,
		PCrash: p.pCrash, PSuspect: p.pSuspect, PReset: p.pReset, PCut: p.pCut,
		CfgDelay: p.cfgDelay, Detect: p.detect, Restart: p.restart, Snap: p.snap,
		TornCrash: true, KeepClean: p.keep,
	}
}

type (
	// simNode is one replica incarnation: a Core and the runtime around it.
	simNode = sim.Replica[*pb.Core]
	// simClient runs one operation at a time: a write, or a read whose
	// reply waits, like a write's, for the commit point to reach the seq
	// it read at.
	simClient = sim.Client[*simNode]
)

// world is one simulated primary-backup group (see sim.World). Its master
// plays the coordinator (the atomic test-and-set of VM-FT): on a primary
// crash it promotes the complete backup with the highest applied seq,
// exactly once per epoch; it removes crashed backups, adds a restarted
// node as joiner, and makes the joiner a backup once caught up. It knows
// the nodes' statuses only as they last reported them, every
// simParams.report steps, so the backup it promotes may no longer be the
// most caught-up one when it takes office.
type world struct {
	*sim.World[pb.Message, *pb.Core]
	p         simParams
	stats     simStats
	reports   []pb.Status       // by node index: the status as last reported to the master
	primaryOf map[uint64]string // epoch -> the incarnation that acted as primary in it
}

// simStats counts what happened, to show the faults were exercised.
type simStats struct {
	sim.WorldStats      // Crashes and Suspicions by pb.Role
	failovers       int // backups promoted to primary
	behind          int // backups behind the backup promoted, at the time
	ahead           int // backups ahead of the backup promoted, at the time
	joins           int // joiners made backups
	logJoins        int // of them, joiners on a kept state that needed no snapshot
	backupSnapshots int // snapshots installed by a backup (a divergent suffix)
}

func (s *simStats) add(o simStats) {
	s.WorldStats.Add(o.WorldStats)
	s.failovers += o.failovers
	s.behind += o.behind
	s.ahead += o.ahead
	s.joins += o.joins
	s.logJoins += o.logJoins
	s.backupSnapshots += o.backupSnapshots
}

// String summarizes the stats for logs.
func (s simStats) String() string {
	return fmt.Sprintf("crashes primary %d backup %d joiner %d; suspicions primary %d backup %d joiner %d; restarts %d configs %d failovers %d (others behind %d ahead %d) joins %d (from a kept state by log %d of %d) snapshots %d (by backups %d) resets %d cuts %d; writes %d reads %d window-full %d stale %d; given up %d (committed later) + %d (lost)",
		s.Crashes[pb.RolePrimary], s.Crashes[pb.RoleBackup], s.Crashes[pb.RoleJoining],
		s.Suspicions[pb.RolePrimary], s.Suspicions[pb.RoleBackup], s.Suspicions[pb.RoleJoining],
		s.Restarts, s.Configs, s.failovers, s.behind, s.ahead, s.joins, s.logJoins, s.Kept, s.Snapshots, s.backupSnapshots, s.Resets, s.Cuts,
		s.Writes, s.Reads, s.WindowFull, s.Stale, s.Settled, s.Lost)
}

func newWorld(seed uint64, trace *sim.Trace) *world {
	rng := sim.NewRand(seed)
	p := drawParams(rng)
	w := &world{p: p, reports: make([]pb.Status, p.nodes), primaryOf: map[uint64]string{}}
	w.World = sim.NewWorld(rng, trace, w.rules(), p.world(), &w.stats.WorldStats)
	w.Trace.Logf("params %+v", w.p)
	return w
}

// rules are primary-backup's rules of the simulated world (see
// simnode_test.go).
func (w *world) rules() sim.Rules[pb.Message, *pb.Core] {
	return sim.Rules[pb.Message, *pb.Core]{
		Protocol: keptProtocol(w.p.opts),
		From:     func(m pb.Message) string { return m.From },
		Event: func(m pb.Message) string {
			return fmt.Sprintf("%s e%d seq %d (%d entries)", m.Type, m.Epoch, m.Seq, len(m.Entries))
		},
		Role:         func(c *pb.Core) (int, string) { r := c.Detail().Role; return int(r), r.String() },
		Complete:     func(c *pb.Core) bool { return c.Detail().Complete },
		CheckNeed:    w.checkNeed,
		CheckCommit:  w.checkCommit,
		Committed:    w.committed,
		Member:       isMember,
		Install:      w.install,
		Read:         w.read,
		CheckPropose: w.checkPropose,
		Started:      func(n *simNode) { w.reports[n.Index] = n.Core.Detail() },
		Master:       w.master,
		Check:        w.check,
		Final:        w.finalCheck,
	}
}

var violation = sim.Violation

// keptProtocol is protocol(opts) whose replicas, when the world restarts
// one on a state it kept (applied above 0: all committed, see
// sim.WorldParams.KeepClean), know that state to be committed, as the
// runtime tells a replica that kept its state at a clean stop.
func keptProtocol(opts pb.Options) sim.Protocol[pb.Message, *pb.Core] {
	p := protocol(opts)
	p.New = func(id string, applied uint64) *pb.Core {
		o := opts
		o.ID, o.Committed = id, applied > 0
		return pb.New(o, applied)
	}
	return p
}
