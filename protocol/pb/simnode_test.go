package pb_test

import (
	"errors"
	"fmt"
	"slices"

	"github.com/lockstep/lockstep/protocol/pb"
	"github.com/lockstep/lockstep/sim"
)

// drain plays the runtime's part after every call into n's core: it sends
// the messages, queues the entries to apply, releases replies up to the
// commit point and starts snapshot transfers.
func (w *world) drain(n *simNode) error {
	if !n.core.HasReady() {
		return nil
	}
	rd := n.core.Ready()
	for _, m := range rd.Messages {
		if m.From != n.name {
			return violation("%s sends a message from %q", n.name, m.From)
		}
		w.net.Send(w.step, m.From, m.To, m)
	}
	for _, e := range rd.Apply {
		if e.Seq != n.queued+1 {
			return violation("%s: Ready.Apply seq %d after %d", n.name, e.Seq, n.queued)
		}
		n.queue = append(n.queue, e)
		n.queued = e.Seq
	}
	if rd.Commit != 0 {
		if err := w.commit(n, rd.Commit); err != nil {
			return err
		}
	}
	if rd.NeedSnapshot != "" {
		if st := n.core.Status(); rd.NeedSnapshot != st.Primary {
			return violation("%s needs a snapshot from %s, not from its primary %s", n.name, rd.NeedSnapshot, st.Primary)
		}
		at := w.step + int64(w.rng.IntN(4))
		w.snaps = append(w.snaps, snapRequest{at: at, node: n, from: rd.NeedSnapshot})
		w.logf("%s needs a snapshot from %s", n.name, rd.NeedSnapshot)
	}
	return nil
}

// commit records the entries n committed, checks that no seq is committed
// twice with different entries and that only one replica acts as primary
// in an epoch, and releases the replies of n's clients.
func (w *world) commit(n *simNode, c uint64) error {
	st := n.core.Status()
	if st.Role != pb.RolePrimary {
		return violation("%s (%s) reports Commit %d", n.name, st.Role, c)
	}
	if err := w.actsAsPrimary(n, st.Epoch); err != nil {
		return err
	}
	if c > n.applied || c <= n.commitSeen {
		return violation("%s commits %d after %d, with %d applied", n.name, c, n.commitSeen, n.applied)
	}
	for s := n.commitSeen + 1; s <= c; s++ {
		if err := w.recordCommitted(n, s); err != nil {
			return err
		}
	}
	n.commitSeen = c
	for _, cl := range w.cl {
		if cl.busy && cl.node == n && cl.seq <= c {
			w.release(cl)
		}
	}
	return nil
}

// actsAsPrimary checks that n is the only incarnation to act as primary
// in epoch.
func (w *world) actsAsPrimary(n *simNode, epoch uint64) error {
	switch id := w.primaryOf[epoch]; id {
	case "":
		w.primaryOf[epoch] = n.id()
	case n.id():
	default:
		return violation("%s and %s both act as primary in epoch %d", id, n.id(), epoch)
	}
	return nil
}

// release answers a client whose write or read the commit point reached.
func (w *world) release(cl *simClient) {
	cl.busy = false
	if cl.read {
		w.hist.Return(cl.op, sim.KVOutput{Value: cl.value})
		w.logf("client %d: read at %d done", cl.id, cl.seq)
		return
	}
	w.hist.Return(cl.op, nil)
	w.logf("client %d: write %d done", cl.id, cl.seq)
}

// recordCommitted records the entry n committed at s. Every live member
// that applied s must have applied that same entry: a backup with another
// entry there cannot have acknowledged it. (A joiner may still hold an
// old primary's suffix; it does not count for commit and must sync, which
// replaces that suffix, before it becomes a backup. So may a removed
// primary that does not know yet; see isMember.)
func (w *world) recordCommitted(n *simNode, s uint64) error {
	for uint64(len(w.committed)) <= s {
		w.committed = append(w.committed, 0)
	}
	d := n.digest[s]
	switch w.committed[s] {
	case 0:
		w.committed[s] = d
		w.maxCommitted = max(w.maxCommitted, s)
		w.settleGivenUp(s, d)
	case d:
	default:
		return violation("seq %d committed twice with different entries (%s)", s, n.name)
	}
	for _, m := range w.nodes {
		if m.alive && isMember(m) && m.applied >= s && m.digest[s] != d {
			return violation("%s commits seq %d, which %s applied with another entry", n.name, s, m.name)
		}
	}
	return nil
}

// settleGivenUp returns the write whose client gave up, if the entry just
// committed at s is its own: this is when the client would have had its
// reply had it waited, and from now on every read must see the write.
func (w *world) settleGivenUp(s, digest uint64) {
	for i, k := range w.givenUp {
		if wr := w.writes[k]; wr.seq == s && wr.digest == digest {
			w.hist.Return(wr.op, nil)
			w.givenUp = slices.Delete(w.givenUp, i, i+1)
			w.stats.settled++
			w.logf("given-up write %d committed", s)
			return
		}
	}
}

// snapshots moves the snapshot transfers that are due: the source takes
// its state at its applied seq and calls Hold, and after p.snap steps at
// most (0: in the same step) the requester installs it and calls Restored,
// if it still accepts it. A transfer whose requester or (before taking
// it) source crashed is dropped: the requester asks again in a new
// configuration.
func (w *world) snapshots() error {
	var keep []snapRequest
	for _, r := range w.snaps {
		if r.at > w.step || !r.node.alive {
			if r.node.alive {
				keep = append(keep, r)
			}
			continue
		}
		if r.snap == nil {
			src := w.by[r.from]
			if !src.alive {
				continue
			}
			r.snap = src.snapshot()
			src.core.Hold(r.snap.seq)
			w.logf("snapshot of %s at %d for %s", src.name, r.snap.seq, r.node.name)
			if err := w.drain(src); err != nil {
				return err
			}
			if r.at = w.step + int64(w.rng.IntN(int(w.p.snap)+1)); r.at > w.step {
				keep = append(keep, r)
				continue
			}
		}
		if err := w.install(r); err != nil {
			return err
		}
	}
	w.snaps = keep
	return nil
}

func (w *world) install(r snapRequest) error {
	n := r.node
	if !n.core.AcceptsSnapshot(r.from) {
		w.logf("%s refuses the snapshot of %s at %d", n.name, r.from, r.snap.seq)
		return nil
	}
	role := n.core.Status().Role
	n.restore(r.snap)
	n.core.Restored(r.from, r.snap.seq)
	if st := n.core.Status(); st.Applied != r.snap.seq || st.Last != r.snap.seq {
		return violation("%s restored %d but has applied %d, last %d", n.name, r.snap.seq, st.Applied, st.Last)
	}
	w.stats.snapshots++
	if role == pb.RoleBackup {
		w.stats.backupSnapshots++
	}
	w.logf("%s (%s) installs the snapshot at %d", n.name, role, r.snap.seq)
	return w.drain(n)
}

// simKeys is how many keys clients use. Fewer keys mean more contention,
// but porcupine's search grows with the factorial of the appends that are
// concurrent on one key.
const simKeys = 5

// clients starts operations at the master's primary. A refused operation
// is not recorded: it cannot have taken effect.
func (w *world) clients() error {
	if !w.faulty {
		return nil
	}
	for _, c := range w.cl {
		if c.busy || w.rng.Float64() >= w.p.pOp {
			continue
		}
		key := string(rune('a' + w.rng.IntN(simKeys)))
		var err error
		switch r := w.rng.IntN(10); {
		case r < 3:
			w.read(c, key)
		case r < 6:
			err = w.write(c, sim.KVPut, key)
		default:
			err = w.write(c, sim.KVAppend, key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// read answers a get at the primary from its state at its applied seq A,
// but releases the reply only once the commit point reaches A: the reply
// never shows an entry that a failover could lose. This is the rule
// Status.ReadReady documents.
func (w *world) read(c *simClient, key string) {
	n := w.by[w.m.cfg.Members[0]]
	if !n.alive || !n.core.Status().ReadReady {
		return
	}
	c.op = w.hist.Invoke(c.id, sim.KVInput{Op: sim.KVGet, Key: key})
	c.busy, c.read, c.node, c.seq, c.value = true, true, n, n.applied, n.kv[key]
	w.stats.reads++
	w.logf("client %d: get %s at %s seq %d", c.id, key, n.name, c.seq)
	if n.commitSeen >= c.seq {
		w.release(c)
	}
}

func (w *world) write(c *simClient, op sim.KVOp, key string) error {
	n := w.by[w.m.cfg.Members[0]]
	if !n.alive {
		return nil
	}
	c.counter++
	value := fmt.Sprintf("%d.%d;", c.id, c.counter)
	seq, err := n.core.Propose(kvEntry(op, key, value))
	st := n.core.Status()
	switch {
	case errors.Is(err, pb.ErrWindowFull):
		w.stats.windowFull++
		if maxLag(st) < uint64(w.p.opts.Window) {
			return violation("%s: window full, but its peers lag at most %d: %+v", n.name, maxLag(st), st.Peers)
		}
		return nil
	case errors.Is(err, pb.ErrNotPrimary):
		return nil
	case err != nil:
		return violation("%s: Propose: %v", n.name, err)
	}
	if maxLag(st) > uint64(w.p.opts.Window) || st.Pending > w.p.opts.Window {
		return violation("%s: Propose beyond the window: %d entries held, peers %+v", n.name, st.Pending, st.Peers)
	}
	if seq != n.queued+1 {
		return violation("%s: Propose gave seq %d after %d", n.name, seq, n.queued)
	}
	n.queue = append(n.queue, pb.Entry{Seq: seq, Data: kvEntry(op, key, value)})
	n.queued = seq
	c.busy, c.read, c.node, c.seq = true, false, n, seq
	c.op = w.hist.Invoke(c.id, sim.KVInput{Op: op, Key: key, Value: value})
	c.write = len(w.writes)
	w.writes = append(w.writes, simWrite{op: c.op, seq: seq, digest: digestOf(kvEntry(op, key, value))})
	w.stats.writes++
	w.logf("client %d: %s %s %q at %s seq %d", c.id, opName(op), key, value, n.name, seq)
	return nil
}

func maxLag(st pb.Status) uint64 {
	var m uint64
	for _, p := range st.Peers {
		m = max(m, p.Lag)
	}
	return m
}

func opName(op sim.KVOp) string {
	if op == sim.KVPut {
		return "put"
	}
	return "append"
}

// applyAndTick lets each live runtime apply some of its queue, then ticks.
func (w *world) applyAndTick() error {
	for _, n := range w.nodes {
		if !n.alive {
			continue
		}
		if len(n.queue) > 0 && w.rng.Float64() < w.p.pApply[n.index] {
			k := 1 + w.rng.IntN(len(n.queue))
			for _, e := range n.queue[:k] {
				if err := w.applyOne(n, e); err != nil {
					return err
				}
			}
			n.queue = n.queue[k:]
			n.core.Applied(n.applied)
			if err := w.drain(n); err != nil {
				return err
			}
		}
		if w.rng.Float64() < w.p.pTick {
			n.core.Tick()
			if err := w.drain(n); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *world) applyOne(n *simNode, e pb.Entry) error {
	if err := n.apply(e); err != nil {
		return violation("%v", err)
	}
	if isMember(n) && e.Seq < uint64(len(w.committed)) && w.committed[e.Seq] != 0 && w.committed[e.Seq] != n.digest[e.Seq] {
		return violation("%s applies at committed seq %d a different entry", n.name, e.Seq)
	}
	return nil
}

// isMember reports whether n is a primary or backup in its own view that
// the master has not taken for crashed: a removed replica may hold
// entries that were never committed until it learns of its removal and
// restarts empty.
func isMember(n *simNode) bool {
	r := n.core.Status().Role
	return !n.suspected && (r == pb.RolePrimary || r == pb.RoleBackup)
}

// String summarizes the stats for logs.
func (s simStats) String() string {
	return fmt.Sprintf("crashes primary %d backup %d joiner %d; suspicions primary %d backup %d joiner %d; restarts %d configs %d failovers %d (others behind %d ahead %d) joins %d snapshots %d (by backups %d) resets %d cuts %d; writes %d reads %d window-full %d stale %d; given up %d (committed later) + %d (lost)",
		s.crashes[pb.RolePrimary], s.crashes[pb.RoleBackup], s.crashes[pb.RoleJoining],
		s.suspicions[pb.RolePrimary], s.suspicions[pb.RoleBackup], s.suspicions[pb.RoleJoining],
		s.restarts, s.configs, s.failovers, s.behind, s.ahead, s.joins, s.snapshots, s.backupSnapshots, s.resets, s.cuts,
		s.writes, s.reads, s.windowFull, s.stale, s.settled, s.lost)
}
