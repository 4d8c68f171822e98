package nodesim

import (
	"strings"

	"github.com/lockstep/lockstep/coord"
)

// coordinator models etcd as lockstep uses it: leases, node records
// under keys, and one group configuration that changes only by
// compare-and-swap as coord.Plan decides. Each node reaches it through a
// backend, the coord.Backend its real coord.Registrar runs on; a request
// fails while the coordinator is down or the node is cut off from it.
type coordinator struct {
	w          *World
	rev        int64
	leases     []*lease
	nextLease  int64
	records    []*record // by key, in creation order
	cfg        *coord.Config
	outageTill int64
	nextExpiry int64
	planAt     int64 // a plan is due at this step (0: none)
	ttl        int64
	nodesPfx   string // where node records live, learned from a Registrar
	// violation is the first safety invariant the coordinator saw
	// broken; the world returns it.
	violation error
}

// lease is an etcd lease; expires is the server's deadline.
type lease struct {
	id      int64
	holder  *node
	expires int64
	revoked bool
}

// record is one key.
type record struct {
	key       string
	value     []byte
	lease     *lease
	createRev int64
}

func newCoordinator(w *World) *coordinator {
	return &coordinator{w: w, ttl: w.p.TTL.Milliseconds()}
}

func (c *coordinator) down() bool { return c.w.now < c.outageTill }

// reaches reports whether a request from n gets through now.
func (c *coordinator) reaches(n *node) bool { return !c.down() && !n.coordCut && !n.down }

// find returns the record under key, or nil.
func (c *coordinator) find(key string) *record {
	for _, r := range c.records {
		if r.key == key {
			return r
		}
	}
	return nil
}

// leaseByID returns the live lease id, or nil.
func (c *coordinator) leaseByID(id int64) *lease {
	for _, l := range c.leases {
		if l.id == id && !l.revoked {
			return l
		}
	}
	return nil
}

// revoke ends l and deletes the records attached to it.
func (c *coordinator) revoke(l *lease, why string) {
	if l.revoked {
		return
	}
	l.revoked = true
	kept := c.records[:0]
	var gone []string
	for _, r := range c.records {
		if r.lease != l {
			kept = append(kept, r)
		} else {
			gone = append(gone, r.key)
		}
	}
	c.records = kept
	c.rev++
	c.w.logf("coordinator: lease of %s (%s) %s", l.holder.name, l.holder.inc, why)
	c.w.stats.Inc("lease " + why)
	for _, k := range gone {
		c.notify(k, nil)
	}
	c.changed()
}

// fence is the watchdog's coord.Fence of a process it saw die.
func (c *coordinator) fence(n *node) {
	if c.down() {
		return // the watchdog could not reach etcd: the lease expires instead
	}
	for _, l := range c.leases {
		if l.holder == n {
			c.revoke(l, "fenced")
		}
	}
}

// notify hands the change of key to the process whose registration it is
// (it watches its own key), a little late, as an etcd watch does. A
// process that cannot hear it now reads its key once it reconnects.
func (c *coordinator) notify(key string, rec *coord.Record) {
	for _, n := range c.w.procs() {
		if n.reg == nil || n.reg.Key() != key || !n.registered || n.down {
			continue
		}
		c.w.after(1+c.w.rng.Int64N(20), func() {
			switch {
			case n.down:
			case !c.reaches(n) || n.paused():
				n.recheck = true
			default:
				n.reg.Observe(rec)
			}
		})
	}
}

// changed makes the reconfiguration leader plan again shortly: it
// watches the node records with a lag of its own.
func (c *coordinator) changed() {
	if c.planAt == 0 {
		c.planAt = c.w.now + 1 + c.w.rng.Int64N(5)
	}
}

// step expires leases, plans, and delivers configurations.
func (c *coordinator) step() {
	if c.down() {
		return
	}
	if c.w.now >= c.nextExpiry {
		c.nextExpiry = c.w.now + c.w.p.ExpiryCheck.Milliseconds()
		for _, l := range c.leases {
			if !l.revoked && l.expires <= c.w.now {
				c.revoke(l, "expired")
			}
		}
		c.leases = live(c.leases)
	}
	if c.planAt != 0 && c.w.now >= c.planAt {
		c.planAt = 0
		c.plan()
	}
	c.watch()
}

func live(ls []*lease) []*lease {
	kept := ls[:0]
	for _, l := range ls {
		if !l.revoked {
			kept = append(kept, l)
		}
	}
	return kept
}

// plan runs coord.Plan as the elected reconfigurator would, if any live
// node can reach the coordinator to lead, and applies its change.
func (c *coordinator) plan() {
	leader := false
	for _, r := range c.records {
		if n := r.lease.holder; c.reaches(n) && !n.paused() && !n.retiring() {
			leader = true
		}
	}
	if !leader {
		return
	}
	nodes := c.nodes()
	next, changed, why := coord.Plan(c.cfg, nodes, coord.PlanOptions{Protocol: c.w.p.Protocol, BootstrapExpect: c.w.p.Nodes})
	if !changed {
		return
	}
	if c.cfg != nil && c.violation == nil {
		c.violation = c.checkRemoval(*c.cfg, next)
	}
	c.cfg = &next
	c.rev++
	c.w.stats.Inc("configuration")
	if strings.HasPrefix(why, "recover") {
		c.w.stats.Inc("recovered from disks")
	}
	c.w.logf("coordinator: epoch %d %v joining %v: %s", next.Epoch, next.Members, next.Joining, why)
	c.changed() // Plan makes one change at a time
}

// watch hands each node the newest configuration, a little late, or
// skipping some when several changed in between, as an etcd watch that
// lags does. A node cut off gets it once it reconnects.
func (c *coordinator) watch() {
	if c.cfg == nil {
		return
	}
	for _, n := range c.w.procs() {
		if n.down || n.retiring() || n.watchDue != 0 || n.seenEpoch >= c.cfg.Epoch || !c.reaches(n) {
			continue
		}
		n.watchDue = c.w.now + 1 + c.w.rng.Int64N(20)
		c.w.agenda.Add(n.watchDue, func() { c.deliverConfig(n) })
	}
}

func (c *coordinator) deliverConfig(n *node) {
	n.watchDue = 0
	if n.down || n.retiring() || !c.reaches(n) {
		return // a retiring process's watch ended with its run loop
	}
	if n.paused() {
		n.watchDue = n.pauseTill
		c.w.agenda.Add(n.pauseTill, func() { c.deliverConfig(n) })
		return
	}
	cfg := *c.cfg
	n.seenEpoch = cfg.Epoch
	n.rep.InstallConfig(c.w.ctx, cfg)
}

// outage takes the coordinator down for d milliseconds. etcd keeps its
// leases through an outage and renews them all when a leader is elected
// again, so none expires for the outage alone.
func (c *coordinator) outage(d int64) {
	c.outageTill = max(c.outageTill, c.w.now+d)
	c.w.logf("coordinator: down for %d ms", d)
	c.w.stats.Inc("coordinator outage")
	c.w.agenda.Add(c.outageTill, func() {
		if c.down() {
			return
		}
		for _, l := range c.leases {
			l.expires = max(l.expires, c.w.now+c.ttl)
		}
	})
}
