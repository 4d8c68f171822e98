package nodesim

import (
	"github.com/lockstep/lockstep/coord"
)

// coordinator models etcd as lockstep uses it: leases, node records, and
// one group configuration that changes only by compare-and-swap as
// coord.Plan decides. Requests take a millisecond or two each way and
// fail while the coordinator is down or the node is cut off from it.
type coordinator struct {
	w          *World
	rev        int64
	leases     []*lease
	records    []*record // nodes/<name>, in registration order
	cfg        *coord.Config
	outageTill int64
	nextExpiry int64
	planAt     int64 // a plan is due at this step (0: none)
	ttl        int64
	margin     int64
}

// lease is an etcd lease; expires is the server's deadline.
type lease struct {
	holder  *node
	expires int64
	revoked bool
}

type record struct {
	info  coord.NodeInfo
	lease *lease
}

func newCoordinator(w *World) *coordinator {
	ttl := w.p.TTL.Milliseconds()
	return &coordinator{w: w, ttl: ttl, margin: coord.FencingMargin(w.p.TTL).Milliseconds()}
}

func (c *coordinator) down() bool { return c.w.now < c.outageTill }

// reaches reports whether a request from n gets through now.
func (c *coordinator) reaches(n *node) bool { return !c.down() && !n.coordCut && !n.down }

// register grants n a lease and creates nodes/<name> with its record, as
// coord.Session does: only if no live process holds the name, so a
// restarted process waits until its dead predecessor is fenced or its
// lease expires. While the coordinator cannot be reached, or the name is
// held, the process retries.
func (c *coordinator) register(n *node) {
	if !c.reaches(n) || c.held(n.name) {
		c.w.after(100, func() {
			if !n.down {
				c.register(n)
			}
		})
		return
	}
	l := &lease{holder: n, expires: c.w.now + c.ttl}
	c.leases = append(c.leases, l)
	c.rev++
	c.records = append(c.records, &record{lease: l, info: coord.NodeInfo{
		Name: n.name, Incarnation: n.inc, State: coord.StateStarting, CreateRevision: c.rev,
	}})
	n.registered = true
	n.validUntil = n.clock() + c.ttl - c.margin
	n.nextRenew = c.w.now + c.ttl/3
	c.changed()
}

// held reports whether a live registration holds name.
func (c *coordinator) held(name string) bool {
	for _, r := range c.records {
		if r.info.Name == name {
			return true
		}
	}
	return false
}

// revoke ends l and deletes the records attached to it.
func (c *coordinator) revoke(l *lease, why string) {
	if l.revoked {
		return
	}
	l.revoked = true
	kept := c.records[:0]
	for _, r := range c.records {
		if r.lease != l {
			kept = append(kept, r)
		}
	}
	c.records = kept
	c.rev++
	c.w.logf("coordinator: lease of %s (%s) %s", l.holder.name, l.holder.inc, why)
	c.w.stats.Inc("lease " + why)
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
		if n := r.lease.holder; c.reaches(n) && !n.paused() {
			leader = true
		}
	}
	if !leader {
		return
	}
	nodes := make([]coord.NodeInfo, len(c.records))
	for i, r := range c.records {
		nodes[i] = r.info
	}
	next, changed, why := coord.Plan(c.cfg, nodes, coord.PlanOptions{Protocol: c.w.p.Protocol, BootstrapExpect: c.w.p.Nodes})
	if !changed {
		return
	}
	c.cfg = &next
	c.rev++
	c.w.stats.Inc("configuration")
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
	for _, n := range c.w.nodes {
		if n.down || n.watchDue != 0 || n.seenEpoch >= c.cfg.Epoch || !c.reaches(n) {
			continue
		}
		n.watchDue = c.w.now + 1 + c.w.rng.Int64N(20)
		c.w.agenda.Add(n.watchDue, func() { c.deliverConfig(n) })
	}
}

func (c *coordinator) deliverConfig(n *node) {
	n.watchDue = 0
	if n.down || !c.reaches(n) {
		return
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

// renew is one keep-alive of n's lease, sent now. The reply comes back
// at once; validity counts from the send, as coord.Session's does.
func (c *coordinator) renew(n *node) {
	sent := c.w.now
	if !c.reaches(n) {
		n.nextRenew = sent + 100 // retried sooner, as the session does
		return
	}
	for _, l := range c.leases {
		if l.holder == n && !l.revoked {
			l.expires = sent + c.ttl
			n.validUntil = n.clockAt(sent) + c.ttl - c.margin
			n.nextRenew = sent + c.ttl/3
			return
		}
	}
	n.leaseLost = true // "lease not found": the process stops and restarts
}

// publish updates n's record, as publishStatus does.
func (c *coordinator) publish(n *node, info coord.NodeInfo) bool {
	if !c.reaches(n) {
		return false
	}
	for _, r := range c.records {
		if r.info.Name == n.name && r.info.Incarnation == n.inc {
			info.CreateRevision = r.info.CreateRevision
			r.info = info
			c.rev++
			c.changed()
			return true
		}
	}
	return false
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
