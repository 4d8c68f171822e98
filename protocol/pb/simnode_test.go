package pb_test

import (
	"errors"
	"slices"

	"github.com/lockstep/lockstep/protocol/pb"
	"github.com/lockstep/lockstep/sim"
)

// checkNeed checks that a replica asks for a snapshot only from its
// primary.
func (w *world) checkNeed(n *simNode, src string) error {
	if st := n.Core.Detail(); src != st.Primary {
		return violation("%s needs a snapshot from %s, not from its primary %s", n.Name, src, st.Primary)
	}
	return nil
}

// checkCommit checks that only the primary commits, that only one
// replica acts as primary in an epoch, and that the commit point only
// grows, up to what the primary applied.
func (w *world) checkCommit(n *simNode, c uint64) error {
	st := n.Core.Detail()
	if st.Role != pb.RolePrimary {
		return violation("%s (%s) reports Commit %d", n.Name, st.Role, c)
	}
	if err := w.actsAsPrimary(n, st.Epoch); err != nil {
		return err
	}
	if c > n.Applied || c <= n.CommitSeen {
		return violation("%s commits %d after %d, with %d applied", n.Name, c, n.CommitSeen, n.Applied)
	}
	return nil
}

// actsAsPrimary checks that n is the only incarnation to act as primary
// in epoch.
func (w *world) actsAsPrimary(n *simNode, epoch uint64) error {
	switch id := w.primaryOf[epoch]; id {
	case "":
		w.primaryOf[epoch] = n.ID()
	case n.ID():
	default:
		return violation("%s and %s both act as primary in epoch %d", id, n.ID(), epoch)
	}
	return nil
}

// committed checks the entry n committed at s: every live member that
// applied s must have applied that same entry, since a backup with
// another entry there cannot have acknowledged it. (A joiner may still
// hold an old primary's suffix; it does not count for commit and must
// sync, which replaces that suffix, before it becomes a backup. So may a
// removed primary that does not know yet; see isMember.)
func (w *world) committed(n *simNode, s, digest uint64) error {
	for _, m := range w.Nodes {
		if m.Alive && isMember(m) && m.Applied >= s && m.Digest[s] != digest {
			return violation("%s commits seq %d, which %s applied with another entry", n.Name, s, m.Name)
		}
	}
	return nil
}

// isMember reports whether n is a primary or backup in its own view that
// the master has not taken for crashed: a removed replica may hold
// entries that were never committed until it learns of its removal and
// restarts empty.
func isMember(n *simNode) bool {
	r := n.Core.Detail().Role
	return !n.Suspected && (r == pb.RolePrimary || r == pb.RoleBackup)
}

// install installs a snapshot of n's primary, if n still accepts it: a
// joiner, or a backup whose log diverged from the new primary's.
func (w *world) install(n *simNode, from string, snap *sim.KVSnapshot) error {
	if !n.Core.AcceptsSnapshot(from, snap.Seq) {
		w.Trace.Logf("%s refuses the snapshot of %s at %d", n.Name, from, snap.Seq)
		return nil
	}
	role := n.Core.Detail().Role
	n.Restore(snap)
	n.KeptFrom = 0 // it did need a snapshot
	n.Core.Restored(from, snap.Seq)
	if st := n.Core.Detail(); st.Applied != snap.Seq || st.Last != snap.Seq {
		return violation("%s restored %d but has applied %d, last %d", n.Name, snap.Seq, st.Applied, st.Last)
	}
	w.Stats.Snapshots++
	if role == pb.RoleBackup {
		w.stats.backupSnapshots++
	}
	w.Trace.Logf("%s (%s) installs the snapshot at %d", n.Name, role, snap.Seq)
	return w.Drain(n)
}

// read answers a get at the primary from its state at its applied seq A,
// but releases the reply only once the commit point reaches A: the reply
// never shows an entry that a failover could lose. This is the rule
// Status.ReadReady documents.
func (w *world) read(c *simClient, key string) {
	n := w.By[w.Cfg.Members[0]]
	if !n.Alive || !n.Core.Detail().ReadReady {
		return
	}
	c.Op = w.Hist.Invoke(c.ID, sim.KVInput{Op: sim.KVGet, Key: key})
	c.Busy, c.Read, c.Node, c.Seq, c.Value = true, true, n, n.Applied, n.KV[key]
	w.Stats.Reads++
	w.Trace.Logf("client %d: get %s at %s seq %d", c.ID, key, n.Name, c.Seq)
	if n.CommitSeen >= c.Seq {
		w.Release(c)
	}
}

// checkPropose checks that the primary refuses a write only when a peer
// lags Window entries, and never lets one lag more.
func (w *world) checkPropose(n *simNode, err error) (bool, error) {
	st := n.Core.Detail()
	switch {
	case errors.Is(err, pb.ErrWindowFull):
		w.Stats.WindowFull++
		if maxLag(st) < uint64(w.p.opts.Window) {
			return false, violation("%s: window full, but its peers lag at most %d: %+v", n.Name, maxLag(st), st.Peers)
		}
		return false, nil
	case errors.Is(err, pb.ErrNotPrimary):
		return false, nil
	case err != nil:
		return false, violation("%s: Propose: %v", n.Name, err)
	}
	// The joiner may lag as many entries as fit in RetainBytes (each takes
	// at least a byte) beyond Window.
	joinBound := uint64(w.p.opts.Window + w.p.opts.RetainBytes)
	for _, p := range st.Peers {
		if b := uint64(w.p.opts.Window); p.Lag > b && (!p.Joining || p.Lag > joinBound) {
			return false, violation("%s: Propose beyond the window: peer %+v", n.Name, p)
		}
	}
	held := uint64(w.p.opts.Window)
	if slices.ContainsFunc(st.Peers, func(p pb.PeerStatus) bool { return p.Joining }) {
		held = joinBound
	}
	if uint64(st.Pending) > held {
		return false, violation("%s: Propose beyond the window: %d entries held, peers %+v", n.Name, st.Pending, st.Peers)
	}
	return true, nil
}

func maxLag(st pb.Status) uint64 {
	var m uint64
	for _, p := range st.Peers {
		m = max(m, p.Lag)
	}
	return m
}
