package sim

import (
	"fmt"
)

// Replica is one replica of a World: a core, the runtime around it (an
// apply queue, the configurations on their way to it) and its state
// machine, a KVStore. A restart makes a new incarnation with empty state
// under the same name, in the same Replica.
type Replica[R any] struct {
	Name        string
	Index       int
	Incarnation int
	Alive       bool
	Suspected   bool // the master takes it for crashed: it will be removed while alive
	Core        R
	KVStore
	Queue      []Entry // received or proposed, not yet applied
	Queued     uint64  // the last seq queued
	CommitSeen uint64  // the highest Ready.Commit
	DetectAt   int64   // the step the master notices the crash
	RestartAt  int64   // the step a crashed replica restarts, once removed (0: never)
	// Clean is the state a crashed replica may restart on (see
	// WorldParams.KeepClean), or nil.
	Clean *KVSnapshot
	// KeptFrom is the seq a replica restarted on kept state at, 0 for
	// one that started empty.
	KeptFrom uint64

	configs []timedConfig // published, not yet delivered
}

type timedConfig struct {
	at  int64
	cfg Config
}

// ID names the incarnation.
func (n *Replica[R]) ID() string { return fmt.Sprintf("%s#%d", n.Name, n.Incarnation) }

// Restore installs snap, dropping whatever was queued to apply.
func (n *Replica[R]) Restore(snap *KVSnapshot) {
	n.KVStore.Restore(snap)
	n.Queued, n.Queue = snap.Seq, nil
}

func (w *World[M, R]) newReplica(name string, index, incarnation int) *Replica[R] {
	return &Replica[R]{Name: name, Index: index, Incarnation: incarnation, Alive: true, Core: w.Rules.New(name, 0), KVStore: NewKVStore()}
}

// started shows a new incarnation to Rules.Started.
func (w *World[M, R]) started(n *Replica[R]) {
	if w.Rules.Started != nil {
		w.Rules.Started(n)
	}
}

// snapTransfer is a snapshot transfer: requested (snap == nil) until the
// source takes it at step at, then in transfer until it is installed.
type snapTransfer[R any] struct {
	at   int64
	node *Replica[R]
	from string
	snap *KVSnapshot
}

// Drain plays the runtime's part after every call into n's core: it sends
// the messages, queues the entries to apply, releases replies up to the
// commit point and starts snapshot transfers.
func (w *World[M, R]) Drain(n *Replica[R]) error {
	if !n.Core.HasReady() {
		return nil
	}
	rd := n.Core.Ready()
	msgs, err := w.Rules.messages(rd.Messages)
	if err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	for _, m := range msgs {
		if from := w.Rules.From(m); from != n.Name {
			return Violation("%s sends a message from %q", n.Name, from)
		}
		w.Net.Send(w.Step, n.Name, w.Rules.To(m), m)
	}
	for _, e := range rd.Apply {
		if e.Seq != n.Queued+1 {
			return Violation("%s: Ready.Apply seq %d after %d", n.Name, e.Seq, n.Queued)
		}
		n.Queue = append(n.Queue, e)
		n.Queued = e.Seq
	}
	if rd.Commit != 0 {
		if err := w.commit(n, rd.Commit); err != nil {
			return err
		}
	}
	if rd.NeedSnapshot != "" {
		if err := w.Rules.CheckNeed(n, rd.NeedSnapshot); err != nil {
			return err
		}
		at := w.Step + int64(w.Rng.IntN(4))
		w.snaps = append(w.snaps, snapTransfer[R]{at: at, node: n, from: rd.NeedSnapshot})
		w.Trace.Logf("%s needs a snapshot from %s", n.Name, rd.NeedSnapshot)
	}
	return nil
}

// commit records the entries n committed, checks that no seq is committed
// twice with different entries, and releases the replies of n's clients.
func (w *World[M, R]) commit(n *Replica[R], c uint64) error {
	if err := w.Rules.CheckCommit(n, c); err != nil {
		return err
	}
	for s := n.CommitSeen + 1; s <= c; s++ {
		if err := w.recordCommitted(n, s); err != nil {
			return err
		}
	}
	n.CommitSeen = max(n.CommitSeen, c)
	for _, cl := range w.Clients {
		if cl.Busy && cl.Node == n && cl.Seq <= c {
			w.Release(cl)
		}
	}
	return nil
}

func (w *World[M, R]) recordCommitted(n *Replica[R], s uint64) error {
	d := n.Digest[s]
	settled, ok := w.Writes.Commit(s, d)
	if !ok {
		return Violation("seq %d committed twice with different entries (%s)", s, n.Name)
	}
	if settled {
		w.Stats.Settled++
		w.Trace.Logf("given-up write %d committed", s)
	}
	if w.Rules.Committed != nil {
		return w.Rules.Committed(n, s, d)
	}
	return nil
}

// snapshots moves the snapshot transfers that are due: the source takes
// its state at its applied seq and calls Hold, and after Params.Snap steps
// at most (0: in the same step) the requester installs it (Rules.Install).
// A transfer whose requester or (before taking it) source crashed is
// dropped: the requester asks again in a new configuration.
func (w *World[M, R]) snapshots() error {
	var keep []snapTransfer[R]
	for _, r := range w.snaps {
		if r.at > w.Step || !r.node.Alive {
			if r.node.Alive {
				keep = append(keep, r)
			}
			continue
		}
		if r.snap == nil {
			src := w.By[r.from]
			if !src.Alive {
				continue
			}
			r.snap = src.Snapshot()
			src.Core.Hold(r.snap.Seq)
			w.Trace.Logf("snapshot of %s at %d for %s", src.Name, r.snap.Seq, r.node.Name)
			if err := w.Drain(src); err != nil {
				return err
			}
			if r.at = w.Step + int64(w.Rng.IntN(int(w.Params.Snap)+1)); r.at > w.Step {
				keep = append(keep, r)
				continue
			}
		}
		if err := w.Rules.Install(r.node, r.from, r.snap); err != nil {
			return err
		}
	}
	w.snaps = keep
	return nil
}

// applyAndTick lets each live runtime apply some of its queue, then ticks.
func (w *World[M, R]) applyAndTick() error {
	for _, n := range w.Nodes {
		if !n.Alive {
			continue
		}
		if len(n.Queue) > 0 && w.Rng.Float64() < w.Params.PApply[n.Index] {
			k := 1 + w.Rng.IntN(len(n.Queue))
			for _, e := range n.Queue[:k] {
				if err := w.applyOne(n, e); err != nil {
					return err
				}
			}
			n.Queue = n.Queue[k:]
			n.Core.Applied(n.Applied)
			if err := w.Drain(n); err != nil {
				return err
			}
		}
		if w.Rng.Float64() < w.Params.PTick {
			n.Core.Tick()
			if err := w.Drain(n); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *World[M, R]) applyOne(n *Replica[R], e Entry) error {
	if err := n.Apply(e.Seq, e.Data); err != nil {
		return Violation("%s: %v", n.Name, err)
	}
	if (w.Rules.Member == nil || w.Rules.Member(n)) && w.Writes.Conflicts(e.Seq, n.Digest[e.Seq]) {
		return Violation("%s applies at committed seq %d a different entry", n.Name, e.Seq)
	}
	return nil
}

// deliverMessages steps every message due at a live replica. A message
// of another epoch (Refused) is counted and dropped.
func (w *World[M, R]) deliverMessages() error {
	for _, p := range w.Net.Due(w.Step) {
		n := w.By[p.To]
		if !n.Alive {
			continue
		}
		err := w.Rules.step(n.Core, p.Msg)
		switch {
		case Refused(err):
			w.Stats.Stale++
			continue
		case err != nil:
			return Violation("%s: %v", n.Name, err)
		}
		if w.Trace.Enabled() {
			w.Trace.Logf("%s <- %s %s", n.Name, p.From, w.Rules.Event(p.Msg))
		}
		if err := w.Drain(n); err != nil {
			return err
		}
	}
	return nil
}
