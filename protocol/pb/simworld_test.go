package pb_test

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strings"

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
	pApply   []float64 // per node (by index) per step: the runtime applies some queued entries
	pTick    float64   // per node per step
	cfgDelay int64     // most steps a new configuration takes to reach a node
	detect   int64     // most steps the master takes to notice a crash
	restart  int64     // most steps a removed crashed node stays down
	snap     int64     // most steps between taking a snapshot and installing it
	report   int64     // steps between a node's status reports to the master
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
		},
		clients:  2 + rng.IntN(3),
		pCrash:   0.001 + 0.01*rng.Float64()*rng.Float64(),
		pSuspect: 0.004 * float64(rng.IntN(2)) * rng.Float64(),
		pReset:   0.03 * rng.Float64(),
		pCut:     0.01 * rng.Float64(),
		pOp:      0.1 + 0.3*rng.Float64(),
		pApply:   applySpeeds(rng, nodes),
		pTick:    0.1 + 0.5*rng.Float64(),
		cfgDelay: int64(rng.IntN(1 + rng.IntN(16))),
		detect:   2 + int64(rng.IntN(10)),
		restart:  5 + int64(rng.IntN(60)),
		snap:     int64(rng.IntN(2) * rng.IntN(20)),
		report:   1 + int64(rng.IntN(2)*rng.IntN(80)),
	}
}

// applySpeeds draws how eagerly each node's runtime applies; in half the
// seeds one node is much slower than the rest (VM-FT's slow backup).
func applySpeeds(rng *rand.Rand, nodes int) []float64 {
	p := make([]float64, nodes)
	for i := range p {
		p[i] = 0.3 + 0.7*rng.Float64()
	}
	if rng.IntN(2) == 0 {
		p[rng.IntN(nodes)] = 0.02 + 0.1*rng.Float64()
	}
	return p
}

// simNode is one replica: a Core, the runtime around it (an apply queue)
// and a tiny state machine, a map of strings. A restart makes a new
// incarnation with empty state under the same name.
type simNode struct {
	name        string
	index       int
	incarnation int
	alive       bool
	suspected   bool // the master takes it for crashed: it will be removed while alive
	core        *pb.Core

	kv      map[string]string
	applied uint64
	digest  []uint64   // digest[s]: entry s's data digest (index 0 unused)
	hist    []uint64   // hist[s]: digest of the history 1..s, for prefix checks
	queue   []pb.Entry // received or proposed, not yet applied
	queued  uint64     // last seq queued

	report     pb.Status     // the status as last reported to the master
	configs    []timedConfig // published, not yet delivered
	commitSeen uint64        // the highest Ready.Commit
	detectAt   int64         // step the master notices the crash
	restartAt  int64
}

type timedConfig struct {
	at  int64
	cfg pb.Config
}

func newSimNode(name string, index, incarnation int, opts pb.Options) *simNode {
	n := &simNode{name: name, index: index, incarnation: incarnation, alive: true}
	opts.ID = name
	n.core = pb.New(opts, 0)
	n.report = n.core.Status()
	n.kv = map[string]string{}
	n.digest, n.hist = []uint64{0}, []uint64{0}
	return n
}

// id names the incarnation, for the one-primary-per-epoch check.
func (n *simNode) id() string { return fmt.Sprintf("%s#%d", n.name, n.incarnation) }

// kvEntry encodes a write: op byte, key, NUL, value.
func kvEntry(op sim.KVOp, key, value string) []byte {
	return append(append([]byte{byte(op)}, key...), append([]byte{0}, value...)...)
}

func digestOf(data []byte) uint64 {
	h := fnv.New64a()
	h.Write(data)
	return h.Sum64() | 1
}

// apply applies the next queued entry to the state machine.
func (n *simNode) apply(e pb.Entry) error {
	if e.Seq != n.applied+1 {
		return fmt.Errorf("%s applies seq %d after %d", n.name, e.Seq, n.applied)
	}
	op, rest := sim.KVOp(e.Data[0]), string(e.Data[1:])
	key, value, ok := strings.Cut(rest, "\x00")
	if !ok {
		return fmt.Errorf("%s: corrupt entry %d", n.name, e.Seq)
	}
	switch op {
	case sim.KVPut:
		n.kv[key] = value
	case sim.KVAppend:
		n.kv[key] += value
	default:
		return fmt.Errorf("%s: entry %d has op %d", n.name, e.Seq, op)
	}
	d := digestOf(e.Data)
	n.digest = append(n.digest, d)
	n.hist = append(n.hist, n.hist[len(n.hist)-1]*1099511628211^d)
	n.applied = e.Seq
	return nil
}

// simSnapshot is a replica's state at one seq, in transfer.
type simSnapshot struct {
	seq    uint64
	kv     map[string]string
	digest []uint64
	hist   []uint64
}

// snapshot copies n's state at its applied seq.
func (n *simNode) snapshot() *simSnapshot {
	s := &simSnapshot{seq: n.applied, kv: make(map[string]string, len(n.kv))}
	for k, v := range n.kv {
		s.kv[k] = v
	}
	s.digest = slices.Clone(n.digest[:s.seq+1])
	s.hist = slices.Clone(n.hist[:s.seq+1])
	return s
}

// restore installs s, dropping whatever was queued to apply. The state
// may go back: a backup drops a suffix the new primary never had.
func (n *simNode) restore(s *simSnapshot) {
	n.kv, n.digest, n.hist = s.kv, slices.Clone(s.digest), slices.Clone(s.hist)
	n.applied, n.queued, n.queue = s.seq, s.seq, nil
}

// simClient runs one operation at a time: a write, or a read whose reply
// waits, like a write's, for the commit point to reach the seq it read at.
type simClient struct {
	id      int
	busy    bool
	read    bool
	value   string // a read's result, released at commit
	op      sim.OpID
	node    *simNode // the primary it waits on
	seq     uint64
	write   int // index in world.writes
	counter int
}

// simMaster plays the coordinator (the atomic test-and-set of VM-FT):
// on a primary crash it promotes the complete backup with the highest
// applied seq, exactly once per epoch; it removes crashed backups, adds a
// restarted node as joiner, and makes the joiner a backup once caught up.
// It knows the nodes' statuses only as they last reported them, every
// simParams.report steps, so the backup it promotes may no longer be the
// most caught-up one when it takes office.
type simMaster struct {
	cfg  pb.Config
	size int // members wanted
}

var violation = sim.Violation
