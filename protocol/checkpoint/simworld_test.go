package checkpoint_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"

	"github.com/lockstep/lockstep/protocol/checkpoint"
	"github.com/lockstep/lockstep/sim"
)

// simParams are the knobs of one simulated run, all drawn from its seed.
type simParams struct {
	nodes    int // 3 or 4 replicas, all members at the start
	opts     checkpoint.Options
	clients  int
	pOp      float64   // per idle client per step
	pClose   float64   // per step: the primary's runtime closes its epoch
	bound    int       // dirty keys that close the epoch at once
	pInstall []float64 // per node index per step: the runtime installs what it was given
	pTick    float64   // per node per step
	pCrash   float64   // per step: a random member crashes
	pSuspect float64   // per step: the master takes a live member for crashed
	pReset   float64   // per step: one link loses what is in flight
	pCut     float64   // per step: one link is cut for a while
	pPlan    float64   // per checkpoint: schedule a crash of the primary at some point of it
	cfgDelay int64     // most steps a configuration takes to reach a node
	detect   int64     // most steps the master takes to notice a crash
	restart  int64     // most steps a removed crashed node stays down
	snap     int64     // most steps each leg of a snapshot transfer takes
	report   int64     // steps between a node's status reports to the master
}

func drawParams(rng *rand.Rand) simParams {
	nodes := 3 + rng.IntN(2)
	p := simParams{
		nodes: nodes,
		opts: checkpoint.Options{
			Window:      1 + rng.IntN(6),
			MaxChunk:    8 + rng.IntN(120),
			ResendTicks: 2 + rng.IntN(8),
			HelloTicks:  2 + rng.IntN(8),
		},
		clients:  2 + rng.IntN(3),
		pOp:      0.1 + 0.3*rng.Float64(),
		pClose:   0.05 + 0.4*rng.Float64(),
		bound:    2 + rng.IntN(simKeys),
		pTick:    0.2 + 0.5*rng.Float64(),
		pCrash:   0.001 + 0.006*rng.Float64(),
		pSuspect: 0.002 * float64(rng.IntN(2)) * rng.Float64(),
		pReset:   0.03 * rng.Float64(),
		pCut:     0.01 * rng.Float64(),
		pPlan:    0.01 + 0.05*rng.Float64(),
		cfgDelay: int64(rng.IntN(1 + rng.IntN(12))),
		detect:   2 + int64(rng.IntN(10)),
		restart:  5 + int64(rng.IntN(50)),
		snap:     int64(rng.IntN(2) * rng.IntN(15)),
		report:   1 + int64(rng.IntN(2)*rng.IntN(40)),
	}
	p.pInstall = sim.ApplySpeeds(rng, nodes) // a slow backup in half the seeds, which the window throttles
	return p
}

// world is one simulated group: replicas, network, master, clients, and
// the oracle of every state a primary had at a checkpoint or snapshot.
// One seed drives every choice; nothing iterates over a map.
type world struct {
	rng    *rand.Rand
	p      simParams
	step   int64
	faulty bool
	net    *sim.Network[checkpoint.Message]
	nodes  []*simNode // by index; a restart replaces the entry
	cfg    checkpoint.Config
	size   int // members the master wants
	agenda sim.Agenda[func() error]
	cl     []*simClient
	hist   sim.History
	trace  *sim.Trace
	count  sim.Counters

	states   map[stateKey]uint64 // digest of a primary's state at a store seq
	released []simWrite          // writes whose reply was released
	givenUp  []simWrite          // writes whose client gave up
	releaser map[uint64]string   // epoch -> the incarnation that released replies in it
	plan     crashPlan
}

// stateKey names the state of one primary incarnation at one store seq.
type stateKey struct {
	origin string
	seq    uint64
}

// violation reports a broken invariant of the simulation.
var violation = sim.Violation

func newWorld(seed uint64, trace *sim.Trace) *world {
	rng := sim.NewRand(seed)
	w := &world{rng: rng, p: drawParams(rng), trace: trace,
		states: map[stateKey]uint64{}, releaser: map[uint64]string{}}
	w.net = sim.NewNetwork[checkpoint.Message](rng, sim.NetworkOptions{MinDelay: 1, MaxDelay: 1 + int64(rng.IntN(1+rng.IntN(10)))})
	w.cfg = checkpoint.Config{Epoch: 1}
	for i := range w.p.nodes {
		n := w.newNode(fmt.Sprintf("n%d", i+1), i, 0)
		w.nodes = append(w.nodes, n)
		w.cfg.Members = append(w.cfg.Members, n.name)
	}
	w.size = w.p.nodes
	for i := range w.p.clients {
		w.cl = append(w.cl, &simClient{id: i})
	}
	w.logf("params %+v", w.p)
	return w
}

func (w *world) logf(format string, args ...any) {
	if w.trace != nil {
		w.trace.Logf(format, args...)
	}
}

// node returns the current incarnation of name, or nil.
func (w *world) node(name string) *simNode {
	for _, n := range w.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// run drives steps faulty steps and then quiet ones without faults or new
// client operations, checking the invariants after every step and
// liveness at the end; it returns the first violation.
func (w *world) run(steps, quiet int) error {
	for _, n := range w.nodes {
		if err := w.configure(n, w.cfg); err != nil {
			return err
		}
	}
	for w.step = 1; w.step <= int64(steps+quiet); w.step++ {
		w.trace.SetStep(w.step)
		w.faulty = w.step <= int64(steps)
		if !w.faulty {
			w.net.HealAll()
			w.plan = crashPlan{}
		}
		if err := w.oneStep(); err != nil {
			return fmt.Errorf("step %d: %w", w.step, err)
		}
	}
	return w.finish()
}

func (w *world) oneStep() error {
	if w.faulty {
		w.faults()
	}
	for _, f := range []func() error{w.due, w.master, w.deliver, w.clients, w.runtimes, w.check} {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

// due runs what the agenda holds for this step.
func (w *world) due() error {
	for _, f := range w.agenda.Due(w.step) {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

// faults injects at most one crash, suspicion, link reset or cut.
func (w *world) faults() {
	r := w.rng.Float64()
	for _, f := range []struct {
		p  float64
		do func()
	}{
		{w.p.pCrash, func() {
			if n := w.victim(nil); n != nil {
				w.crash(n, "random")
			}
		}},
		{w.p.pSuspect, func() {
			if n := w.victim(nil); n != nil {
				w.suspect(n)
			}
		}},
		{w.p.pReset, func() {
			a, b := w.pair()
			w.count.Inc("link resets")
			w.logf("reset %s-%s: %d lost", a, b, w.net.Reset(a, b))
		}},
		{w.p.pCut, func() {
			a, b := w.pair()
			w.net.Cut(a, b)
			w.count.Inc("cuts")
			heal := w.step + 5 + int64(w.rng.IntN(60))
			w.agenda.Add(heal, func() error { w.net.Heal(a, b); return nil })
			w.logf("cut %s-%s until %d", a, b, heal)
		}},
	} {
		if r < f.p {
			f.do()
			return
		}
		r -= f.p
	}
}

// pair picks two distinct nodes for a link fault.
func (w *world) pair() (string, string) {
	ij := w.rng.Perm(len(w.nodes))
	return w.nodes[ij[0]].name, w.nodes[ij[1]].name
}

func (w *world) inConfig(name string) bool {
	return slices.Contains(w.cfg.Members, name) || w.cfg.Joining == name
}

// victim picks a random live, unsuspected replica of the configuration to
// crash or suspect (only must, if given), keeping another live,
// unsuspected complete member for the master to promote; nil if none.
func (w *world) victim(must *simNode) *simNode {
	var complete, cands []*simNode
	for _, n := range w.nodes {
		if !n.alive || n.suspected || !w.inConfig(n.name) {
			continue
		}
		if slices.Contains(w.cfg.Members, n.name) && n.core.Detail().Complete {
			complete = append(complete, n)
		}
		if must == nil || n == must {
			cands = append(cands, n)
		}
	}
	cands = slices.DeleteFunc(cands, func(n *simNode) bool {
		others := len(complete)
		if slices.Contains(complete, n) {
			others--
		}
		return others == 0
	})
	if len(cands) == 0 {
		return nil
	}
	return cands[w.rng.IntN(len(cands))]
}

// crash stops n: its state is lost, and so is everything in flight to it
// and, on some links, from it; its clients give up. The master notices
// after a while, and once it has removed n, n comes back empty.
func (w *world) crash(n *simNode, why string) {
	role := n.core.Detail().Role
	w.count.Inc("crashes of a " + role.String())
	if !n.suspected {
		n.detectAt = w.step + 1 + int64(w.rng.IntN(int(w.p.detect)))
	}
	n.alive = false
	w.net.DropTo(n.name)
	for _, o := range w.nodes {
		if o != n && w.rng.IntN(2) == 0 {
			w.net.Reset(n.name, o.name)
		}
	}
	w.giveUp(n)
	if w.plan.node == n {
		w.plan = crashPlan{}
	}
	if w.rng.IntN(5) != 0 {
		w.agenda.Add(max(n.detectAt, w.step)+1+int64(w.rng.IntN(int(w.p.restart))), func() error { return w.restart(n) })
	}
	w.logf("crash %s (%s): %s", n.id, role, why)
}

// restart brings a crashed node back empty, as a new incarnation that
// knows the current configuration, once the master has removed it.
func (w *world) restart(old *simNode) error {
	if !w.faulty || w.nodes[old.index] != old {
		return nil
	}
	if w.inConfig(old.name) {
		w.agenda.Add(w.step+5, func() error { return w.restart(old) })
		return nil
	}
	n := w.newNode(old.name, old.index, old.inc+1)
	w.nodes[old.index] = n
	w.count.Inc("restarts")
	w.logf("restart %s", n.id)
	return w.configure(n, w.cfg)
}

// suspect makes the master take n for crashed while it goes on (it lost
// its lease, not its links): the master removes it, and n restarts empty
// once a configuration without it reaches it.
func (w *world) suspect(n *simNode) {
	w.count.Inc("suspicions of a " + n.core.Detail().Role.String())
	n.suspected = true
	n.detectAt = w.step + 1 + int64(w.rng.IntN(int(w.p.detect)))
	w.logf("suspect %s (%s)", n.id, n.core.Detail().Role)
}

// failed reports whether the master has noticed that n crashed, or takes
// it for crashed.
func (w *world) failed(n *simNode) bool {
	return n != nil && (!n.alive || n.suspected) && w.step >= n.detectAt
}

// master plays the coordinator, one change per step: promote the complete
// backup with the highest Applied when the primary failed, remove a
// failed backup or joiner, make a caught-up joiner a backup, or add a
// live non-member as joiner. It sees statuses only as last reported.
func (w *world) master() error {
	for _, n := range w.nodes {
		if n.alive && (w.step+int64(n.index))%w.p.report == 0 {
			n.report = n.core.Detail()
		}
	}
	cfg := w.cfg
	if w.failed(w.node(cfg.Members[0])) {
		w.failover()
		return nil
	}
	for _, name := range append(slices.Clone(cfg.Members[1:]), cfg.Joining) {
		if n := w.node(name); name != "" && w.failed(n) {
			next := checkpoint.Config{Members: slices.DeleteFunc(slices.Clone(cfg.Members), func(s string) bool { return s == name })}
			if name != cfg.Joining {
				next.Joining = cfg.Joining
			}
			w.publish(next, "remove "+n.id)
			return nil
		}
	}
	if j := w.node(cfg.Joining); j != nil {
		if st := j.report; j.alive && !j.suspected && st.Epoch == cfg.Epoch && st.Role == checkpoint.RoleJoining && st.CaughtUp {
			w.count.Inc("joiners made backups")
			w.publish(checkpoint.Config{Members: append(slices.Clone(cfg.Members), j.name)}, "make "+j.id+" a backup")
		}
		return nil
	}
	for _, n := range w.nodes {
		if len(cfg.Members) < w.size && n.alive && !n.suspected && !w.inConfig(n.name) {
			w.publish(checkpoint.Config{Members: slices.Clone(cfg.Members), Joining: n.name}, "add "+n.id)
			return nil
		}
	}
	return nil
}

// failover promotes the live complete backup with the highest Applied as
// last reported; it waits if there is none.
func (w *world) failover() {
	var best *simNode
	for _, name := range w.cfg.Members[1:] {
		n := w.node(name)
		if n.alive && !n.suspected && n.report.Complete && (best == nil || n.report.Applied > best.report.Applied) {
			best = n
		}
	}
	if best == nil {
		return
	}
	next := checkpoint.Config{Members: []string{best.name}, Joining: w.cfg.Joining}
	for _, name := range w.cfg.Members[1:] {
		if name != best.name {
			next.Members = append(next.Members, name)
		}
	}
	w.count.Inc("failovers")
	w.publish(next, fmt.Sprintf("promote %s (applied %d)", best.id, best.report.Applied))
}

// publish makes cfg the master's configuration and schedules its
// delivery to every live node, in order per node, after a random delay.
func (w *world) publish(cfg checkpoint.Config, why string) {
	cfg.Epoch = w.cfg.Epoch + 1
	w.cfg = cfg
	w.logf("config %d %v joining %q: %s", cfg.Epoch, cfg.Members, cfg.Joining, why)
	for _, n := range w.nodes {
		if !n.alive {
			continue
		}
		n.cfgAt = max(n.cfgAt, w.step+int64(w.rng.IntN(int(w.p.cfgDelay)+1)))
		w.agenda.Add(n.cfgAt, func() error { return w.configure(n, cfg) })
	}
}

// configure hands cfg to n's core. A suspected node that learns it was
// removed restarts empty, as a removed replica must.
func (w *world) configure(n *simNode, cfg checkpoint.Config) error {
	if !n.alive || w.nodes[n.index] != n {
		return nil
	}
	was := n.core.Detail().Role
	n.core.SetConfig(cfg)
	if cfg.Epoch > n.cfg.Epoch {
		n.cfg = cfg
	}
	if was != checkpoint.RolePrimary && n.core.Detail().Role == checkpoint.RolePrimary {
		n.commit = 0 // the commit point starts again on taking office
	}
	if err := w.drain(n); err != nil {
		return err
	}
	if n.suspected && n.core.Detail().Role == checkpoint.RoleNone {
		w.crash(n, "learns it was removed")
	}
	return nil
}

// deliver steps every message due, playing the scheduled crashes at an
// ack's arrival.
func (w *world) deliver() error {
	for _, p := range w.net.Due(w.step) {
		n := w.node(p.To)
		if !n.alive {
			continue
		}
		atAck := w.plan.node == n && p.Msg.Type == checkpoint.MsgAck && p.Msg.Seq >= w.plan.seq
		if atAck && w.plan.kind == planAtAck {
			w.planned(n)
			continue
		}
		m, err := checkpoint.DecodeMessage(checkpoint.AppendMessage(nil, p.Msg))
		if err != nil || !sameMessage(m, p.Msg) {
			return violation("%s %s: codec round trip gives %+v, %v", p.Msg.Type, p.Msg.From, m, err)
		}
		err = n.core.Step(checkpoint.AppendMessage(nil, p.Msg))
		switch {
		case errors.Is(err, checkpoint.ErrStaleEpoch):
			w.count.Inc("stale messages")
			continue
		case err != nil:
			return violation("%s: %v", n.id, err)
		}
		if w.trace != nil {
			w.logf("%s <- %s %s e%d seq %d prev %d off %d final %t (%d bytes)", n.id, m.From, m.Type, m.Epoch, m.Seq, m.Prev, m.Offset, m.Final, len(m.Data))
		}
		if err := w.drain(n); err != nil {
			return err
		}
		if atAck && w.plan.kind == planAfterAck && n.alive {
			w.planned(n)
		}
	}
	return nil
}

// sameMessage compares messages as the codec should preserve them.
func sameMessage(a, b checkpoint.Message) bool {
	ad, bd := a.Data, b.Data
	a.Data, b.Data = nil, nil
	return reflect.DeepEqual(a, b) && bytes.Equal(ad, bd)
}
