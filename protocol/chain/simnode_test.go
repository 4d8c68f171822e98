package chain_test

import (
	"errors"
	"fmt"
	"slices"

	"github.com/lockstep/lockstep/protocol/chain"
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
		if st := n.core.Status(); st.Complete {
			return violation("%s, a complete %s, needs a snapshot from %s", n.name, st.Role, rd.NeedSnapshot)
		}
		at := w.step + int64(w.rng.IntN(4))
		w.snaps = append(w.snaps, snapRequest{at: at, joiner: n, from: rd.NeedSnapshot})
		w.logf("%s needs a snapshot from %s", n.name, rd.NeedSnapshot)
	}
	return nil
}

// commit records the entries n committed, checks that no seq is committed
// twice with different entries, and releases the replies of n's clients.
func (w *world) commit(n *simNode, c uint64) error {
	st := n.core.Status()
	if st.Role != chain.RoleHead && st.Role != chain.RoleSingle {
		return violation("%s (%s) reports Commit %d", n.name, st.Role, c)
	}
	if c > n.applied {
		return violation("%s commits %d beyond its applied %d", n.name, c, n.applied)
	}
	for s := n.commitSeen + 1; s <= c; s++ {
		if err := w.recordCommitted(n, s); err != nil {
			return err
		}
	}
	n.commitSeen = max(n.commitSeen, c)
	for _, cl := range w.cl {
		if cl.busy && cl.node == n && cl.seq <= c {
			w.hist.Return(cl.op, nil)
			cl.busy = false
			w.logf("client %d: write %d done", cl.id, cl.seq)
		}
	}
	return nil
}

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
// most (0: in the same step) the joiner installs it and calls Restored, if
// it still accepts it. A transfer whose joiner or (before taking it)
// source crashed is dropped: the joiner asks again in a new configuration.
func (w *world) snapshots() error {
	var keep []snapRequest
	for _, r := range w.snaps {
		if r.at > w.step || !r.joiner.alive {
			if r.joiner.alive {
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
			w.logf("snapshot of %s at %d for %s", src.name, r.snap.seq, r.joiner.name)
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
	j := r.joiner
	if !j.core.AcceptsSnapshot(r.snap.seq) {
		w.logf("%s refuses the snapshot at %d", j.name, r.snap.seq)
		return nil
	}
	j.restore(r.snap)
	j.core.Restored(r.snap.seq)
	if st := j.core.Status(); st.Applied != r.snap.seq || st.Last != r.snap.seq {
		return violation("%s restored %d but has applied %d, last %d", j.name, r.snap.seq, st.Applied, st.Last)
	}
	w.stats.snapshots++
	w.logf("%s installs the snapshot at %d", j.name, r.snap.seq)
	return w.drain(j)
}

// simKeys is how many keys clients use. Fewer keys mean more contention,
// but porcupine's search grows with the factorial of the appends that are
// concurrent on one key: with 3 keys, about one seed in 20,000 took minutes.
const simKeys = 5

// clients starts operations: writes at the master's head, reads at its
// tail. A refused operation is not recorded: it cannot have taken effect.
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

func (w *world) read(c *simClient, key string) {
	m := w.m.cfg.Members
	n := w.by[m[len(m)-1]]
	if !n.alive || !n.core.Status().ReadReady {
		return
	}
	id := w.hist.Invoke(c.id, sim.KVInput{Op: sim.KVGet, Key: key})
	w.hist.Return(id, sim.KVOutput{Value: n.kv[key]})
	w.stats.reads++
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
	case errors.Is(err, chain.ErrWindowFull):
		w.stats.windowFull++
		if st.Role == chain.RoleHead && st.Pending < w.p.opts.Window {
			return violation("%s: window full with %d entries unacknowledged", n.name, st.Pending)
		}
		return nil
	case errors.Is(err, chain.ErrNotHead):
		return nil
	case err != nil:
		return violation("%s: Propose: %v", n.name, err)
	}
	if st.Last-st.Commit > uint64(w.p.opts.Window) || (st.Role == chain.RoleHead && st.Pending > w.p.opts.Window) {
		return violation("%s: Propose beyond the window: last %d commit %d, %d entries unacknowledged", n.name, st.Last, st.Commit, st.Pending)
	}
	if seq != n.queued+1 {
		return violation("%s: Propose gave seq %d after %d", n.name, seq, n.queued)
	}
	n.queue = append(n.queue, chain.Entry{Seq: seq, Data: kvEntry(op, key, value)})
	n.queued = seq
	c.busy, c.node, c.seq = true, n, seq
	c.op = w.hist.Invoke(c.id, sim.KVInput{Op: op, Key: key, Value: value})
	c.write = len(w.writes)
	w.writes = append(w.writes, simWrite{op: c.op, seq: seq, digest: digestOf(kvEntry(op, key, value))})
	w.stats.writes++
	w.logf("client %d: %s %s %q at %s seq %d", c.id, opName(op), key, value, n.name, seq)
	return nil
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

func (w *world) applyOne(n *simNode, e chain.Entry) error {
	if err := n.apply(e); err != nil {
		return violation("%v", err)
	}
	if e.Seq < uint64(len(w.committed)) && w.committed[e.Seq] != 0 && w.committed[e.Seq] != n.digest[e.Seq] {
		return violation("%s applies at committed seq %d a different entry", n.name, e.Seq)
	}
	return nil
}

// String summarizes the stats for logs.
func (s simStats) String() string {
	return fmt.Sprintf("crashes head %d middle %d tail %d joiner %d; restarts %d configs %d promotions %d snapshots %d resets %d cuts %d; writes %d reads %d window-full %d stale %d; given up %d (committed later) + %d (lost)",
		s.crashes[chain.RoleHead], s.crashes[chain.RoleMiddle], s.crashes[chain.RoleTail], s.crashes[chain.RoleJoining],
		s.restarts, s.configs, s.promotions, s.snapshots, s.resets, s.cuts, s.writes, s.reads, s.windowFull, s.stale, s.settled, s.lost)
}
