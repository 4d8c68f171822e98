package nodesim

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/sim"
)

// backend is node n's connection to the simulated coordinator: the
// coord.Backend its coord.Registrar runs on. Every call is answered at
// once, or fails while the coordinator is down or n is cut off from it.
type backend struct {
	c *coordinator
	n *node
}

var _ coord.Backend = backend{}

func (b backend) reach() error {
	if !b.c.reaches(b.n) {
		return fmt.Errorf("%w: coordinator", errUnreachable)
	}
	return nil
}

// Grant implements coord.Backend.
func (b backend) Grant(_ context.Context, ttl time.Duration) (int64, time.Duration, error) {
	if err := b.reach(); err != nil {
		return 0, 0, err
	}
	c := b.c
	c.nextLease++
	c.leases = append(c.leases, &lease{id: c.nextLease, holder: b.n, expires: c.w.now + c.ttl})
	return c.nextLease, time.Duration(c.ttl) * time.Millisecond, nil
}

// KeepAlive implements coord.Backend. The lease's deadline moves from
// now, when the request arrives, as etcd's does.
func (b backend) KeepAlive(_ context.Context, id int64) (time.Duration, error) {
	if err := b.reach(); err != nil {
		return 0, err
	}
	l := b.c.leaseByID(id)
	if l == nil {
		return 0, fmt.Errorf("%w: lease %d", coord.ErrLeaseNotFound, id)
	}
	l.expires = b.c.w.now + b.c.ttl
	return time.Duration(b.c.ttl) * time.Millisecond, nil
}

// Revoke implements coord.Backend.
func (b backend) Revoke(_ context.Context, id int64) error {
	if err := b.reach(); err != nil {
		return err
	}
	if l := b.c.leaseByID(id); l != nil {
		b.c.revoke(l, "revoked")
	}
	return nil
}

// GrantedTTL implements coord.Backend; every lease has the same TTL.
func (b backend) GrantedTTL(_ context.Context, id int64) (time.Duration, error) {
	if err := b.reach(); err != nil {
		return 0, err
	}
	return time.Duration(b.c.ttl) * time.Millisecond, nil
}

// Txn implements coord.Backend, atomically, since the world runs one
// event at a time.
func (b backend) Txn(_ context.Context, t coord.Txn) (coord.TxnResult, error) {
	if err := b.reach(); err != nil {
		return coord.TxnResult{}, err
	}
	c := b.c
	ok := true
	for _, cmp := range t.If {
		r := c.find(cmp.Key)
		if cmp.Absent && r != nil || !cmp.Absent && (r == nil || r.lease == nil || r.lease.id != cmp.Lease) {
			ok = false
		}
	}
	ops := t.Else
	if ok {
		ops = t.Then
	}
	res := coord.TxnResult{Succeeded: ok, Got: make([]*coord.Record, len(ops))}
	for i, op := range ops {
		if op.Get {
			if r := c.find(op.Key); r != nil {
				res.Got[i] = r.record()
			}
			continue
		}
		if err := c.put(op); err != nil {
			return coord.TxnResult{}, err
		}
	}
	res.Revision = c.rev
	return res, nil
}

// put writes op's key at a new revision and tells its watcher.
func (c *coordinator) put(op coord.Op) error {
	var l *lease
	if op.Lease != 0 {
		if l = c.leaseByID(op.Lease); l == nil {
			return fmt.Errorf("%w: lease %d", coord.ErrLeaseNotFound, op.Lease)
		}
	}
	c.rev++
	r := c.find(op.Key)
	if r == nil {
		r = &record{key: op.Key, createRev: c.rev}
		c.records = append(c.records, r)
	}
	r.value, r.lease = slices.Clone(op.Value), l
	c.notify(op.Key, r.record())
	c.changed()
	return nil
}

func (r *record) record() *coord.Record {
	rec := &coord.Record{Value: slices.Clone(r.value), CreateRevision: r.createRev}
	if r.lease != nil {
		rec.Lease = r.lease.id
	}
	return rec
}

// nodes decodes the node records, in registration order, as
// coord.ListNodes does.
func (c *coordinator) nodes() []coord.NodeInfo {
	var out []coord.NodeInfo
	for _, r := range c.records {
		name, ok := strings.CutPrefix(r.key, c.nodesPfx)
		if !ok || c.nodesPfx == "" {
			continue
		}
		var info coord.NodeInfo
		if err := json.Unmarshal(r.value, &info); err != nil {
			panic(err) // written by coord.Registrar
		}
		info.Name, info.CreateRevision = name, r.createRev
		out = append(out, info)
	}
	return out
}

// checkRemoval is the invariant that keeps a name to one live process: a
// configuration drops a member only once that process has died or its
// lease has lapsed on its own clock. A group that removed a member still
// serving under a valid lease would let it answer reads while the others
// commit writes it never sees.
func (c *coordinator) checkRemoval(cur, next coord.Config) error {
	kept := map[coord.Member]bool{}
	for _, m := range next.Members {
		kept[m] = true
	}
	if next.Joining != nil {
		kept[*next.Joining] = true
	}
	for _, m := range cur.Members {
		if kept[m] {
			continue
		}
		for _, n := range c.w.procs() {
			if n.member() == m && !n.down && n.Valid() {
				return sim.Violation("epoch %d removed member %s while it runs with a valid lease", next.Epoch, m)
			}
		}
	}
	return nil
}
