package nodesim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/lockstep/lockstep/sim"
)

// Params shape one simulated cluster.
type Params struct {
	Protocol string // chain, primary-backup or checkpoint
	Nodes    int    // servers, n1..nN; the group bootstraps with all of them
	Clients  int
	Keys     int
	// Window is the replication window; small, so that writes find it
	// full.
	Window int
	// RetainBytes is how much committed history a chain or primary-backup
	// replica keeps (replica.CoreOptions): a node restarted on a clean
	// stop's state catches up from it if it reaches back far enough, else
	// by snapshot.
	RetainBytes int
	// TTL is the coordinator lease; ExpiryCheck how often the coordinator
	// looks for expired leases (etcd: every 500 ms).
	TTL         time.Duration
	ExpiryCheck time.Duration
	// Faults scales how often faults strike (0: a fault-free run).
	Faults float64
	// Loss is the chance that one message between replicas is lost.
	Loss float64
	// Settle is how long, after the faults heal, the group has to serve
	// again, every client to finish, and every joiner to become a member.
	Settle time.Duration
	// Script, when set, is called every step until the faults heal: a
	// scenario that forces a rare path on purpose, where random faults
	// would reach it once in hundreds of seeds (see scenario.go).
	Script func(w *World)
}

// DefaultParams is a 3-node group under faults.
func DefaultParams(protocol string) Params {
	return Params{
		Protocol: protocol, Nodes: 3, Clients: 4, Keys: 3, Window: 16, RetainBytes: 512,
		TTL: 2 * time.Second, ExpiryCheck: 100 * time.Millisecond,
		Faults: 0.6, Loss: 0.01, Settle: 20 * time.Second,
	}
}

// epoch0 is the simulated clock's zero.
var epoch0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// World is one simulated cluster. It is driven by Run on one goroutine.
type World struct {
	p        Params
	seed     uint64
	healedAt int64
	rng      *rand.Rand
	tr       *sim.Trace
	now      int64 // milliseconds since epoch0
	ctx      context.Context
	stats    *Stats

	net    *sim.Network[[]byte]
	agenda sim.Agenda[func()]
	coord  *coordinator
	nodes  []*node // by slot; a restart replaces the node in its slot
	// extras are second processes started under a slot's name while it
	// runs (an operator's mistake); one takes the slot once it registers
	// (after the first has died), and the others exit.
	extras  []*node
	clients []*client
	hist    sim.History
	// slowLinks holds, per "from>to" link, when its last delayed message
	// is sent, so that messages on a slow link keep their order.
	slowLinks map[string]int64
	faulty    bool // faults may strike (false while settling)
}

// Stats count what a run did, for coverage and the summary line.
type Stats struct {
	sim.Counters
	Steps int
}

// Merge adds another run's statistics.
func (s *Stats) Merge(o Stats) {
	s.Counters.Merge(&o.Counters)
	s.Steps += o.Steps
}

// NewWorld builds a cluster from seed; tr may be nil.
func NewWorld(seed uint64, p Params, tr *sim.Trace) *World {
	rng := sim.NewRand(seed)
	w := &World{
		p: p, seed: seed, rng: rng, tr: tr, ctx: context.Background(), stats: &Stats{},
		net:       sim.NewNetwork[[]byte](rng, sim.NetworkOptions{MinDelay: 0, MaxDelay: 2}),
		slowLinks: map[string]int64{},
	}
	w.coord = newCoordinator(w)
	for i := range p.Nodes {
		name := fmt.Sprintf("n%d", i+1)
		w.nodes = append(w.nodes, w.startNode(name, newDisk(w, name), keptNothing))
	}
	for i := range p.Clients {
		w.clients = append(w.clients, newClient(w, i))
	}
	return w
}

// Now is the simulated clock, as every replica reads it.
func (w *World) Now() time.Time { return epoch0.Add(time.Duration(w.now) * time.Millisecond) }

func (w *World) logf(format string, args ...any) { w.tr.Logf(format, args...) }

// after schedules f d milliseconds from now.
func (w *World) after(d int64, f func()) { w.agenda.Add(w.now+max(d, 0), f) }

// Run simulates faulty milliseconds of faults, then heals everything and
// gives the group Params.Settle to finish; it returns the first invariant
// violated, or the linearizability check's verdict.
func (w *World) Run(faulty int) (Stats, error) {
	w.faulty = w.p.Faults > 0 || w.p.Script != nil
	for range faulty {
		if err := w.step(); err != nil {
			return *w.stats, err
		}
	}
	w.faulty = false
	w.healAll()
	w.healedAt = w.now
	if err := w.settle(); errors.Is(err, errGroupLost) {
		// Nothing can be served any more; what was served must still
		// have been linearizable.
		w.stats.Inc("group lost")
		w.logf("group lost: %s", w.describe())
		return *w.stats, w.checkHistory()
	} else if err != nil {
		return *w.stats, err
	}
	if err := w.checkReplicas(); err != nil {
		return *w.stats, err
	}
	return *w.stats, nil
}

// step advances the clock by one millisecond and runs what is due.
func (w *World) step() error {
	w.now++
	w.stats.Steps++
	w.tr.SetStep(w.now)
	for _, f := range w.agenda.Due(w.now) {
		f()
	}
	w.deliver()
	w.coord.step()
	if err := w.coord.violation; err != nil {
		return err
	}
	for _, n := range w.procs() {
		if err := n.step(); err != nil {
			return err
		}
	}
	for _, c := range w.clients {
		c.step()
	}
	if w.faulty && w.p.Script != nil {
		w.p.Script(w)
	}
	if w.faulty && w.p.Faults > 0 {
		w.injectFaults()
	}
	return nil
}

// deliver hands the replicas the messages due now. Each node's messages
// of one step form one burst, as a transport reader's do.
func (w *World) deliver() {
	burst := map[*node][]string{}
	var order []*node
	for _, pk := range w.net.Due(w.now) {
		n := w.byName(pk.To)
		if n == nil || !n.up() {
			w.stats.Inc("msg lost to a down node")
			continue
		}
		if n.paused() {
			n.inbox = append(n.inbox, pk)
			continue
		}
		if w.tr.Enabled() {
			w.logf("%s -> %s: %d bytes %x", pk.From, pk.To, len(pk.Msg), sim.EntryDigest(pk.Msg))
		}
		n.rep.Deliver(pk.From, pk.Msg)
		if _, ok := burst[n]; !ok {
			order = append(order, n)
		}
		burst[n] = append(burst[n], pk.From)
	}
	for _, n := range order {
		n.rep.BurstDone(burst[n][0])
	}
}

// byName is the node currently running under name, or nil.
func (w *World) byName(name string) *node {
	for _, n := range w.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// procs is every running or crashed process: the slots' and the extras.
func (w *World) procs() []*node {
	if len(w.extras) == 0 {
		return w.nodes
	}
	return append(slices.Clone(w.nodes), w.extras...)
}

func (w *World) isExtra(n *node) bool { return slices.Contains(w.extras, n) }

func (w *World) dropExtra(n *node) {
	w.extras = slices.DeleteFunc(w.extras, func(o *node) bool { return o == n })
}

// adopt gives a newly registered extra its name's slot, as the peers'
// and clients' address lookups would: the registration is what names a
// process. The process there becomes the extra: it is down, or its
// registration is gone and it exits once it notices (it is not
// restarted), or, if a broken registration let the extra take the name
// from it, it runs on and the invariants judge it.
func (w *World) adopt(n *node) {
	if !w.isExtra(n) {
		return
	}
	for i, o := range w.nodes {
		if o.name == n.name {
			w.nodes[i] = n
			w.dropExtra(n)
			if !o.down {
				w.extras = append(w.extras, o)
			}
			w.logf("%s (%s) took over the slot of %s", n.name, n.inc, o.inc)
			return
		}
	}
}
