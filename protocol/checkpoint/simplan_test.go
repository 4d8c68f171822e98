package checkpoint_test

import "maps"

// planKind is a point of a checkpoint's life at which the simulation
// crashes its primary on purpose, so that every one is exercised.
type planKind int

const (
	planBeforeSend  planKind = iota // the checkpoint is made, no chunk sent
	planMidChunks                   // some of its chunks sent, not all
	planAfterSend                   // every chunk sent, no ack yet
	planAtAck                       // an ack for it arrives, and is lost with the primary
	planAfterAck                    // the first ack for it was processed
	planAfterCommit                 // it committed and the replies were released
	planKinds
)

var planNames = [planKinds]string{"before the send", "between chunks", "after the send", "as an ack arrives", "after an ack", "after the commit"}

// crashPlan is a crash scheduled for one checkpoint of one primary. The
// ones that wait for acks expire, since a primary that loses its office
// gets none.
type crashPlan struct {
	node  *simNode
	seq   uint64
	kind  planKind
	until int64
}

// afterCheckpoint plays the runtime's Ready after a checkpoint was made,
// sometimes scheduling a crash of the primary at some point of it.
func (w *world) afterCheckpoint(n *simNode) error {
	rd, err := ready(n)
	if err != nil {
		return err
	}
	if w.plan.node != nil && w.step > w.plan.until {
		w.plan = crashPlan{}
	}
	if !w.faulty || w.plan.node != nil || w.rng.Float64() >= w.p.pPlan || w.victim(n) == nil {
		return w.effects(n, rd, -1)
	}
	w.plan = crashPlan{node: n, seq: n.seq, kind: planKind(w.rng.IntN(int(planKinds))), until: w.step + 300}
	switch w.plan.kind {
	case planBeforeSend:
		w.planned(n)
		return nil
	case planMidChunks:
		if len(rd.Messages) < 2 {
			w.plan.kind = planAfterSend
			break
		}
		if err := w.effects(n, rd, 1+w.rng.IntN(len(rd.Messages)-1)); err != nil {
			return err
		}
		w.planned(n)
		return nil
	}
	if err := w.effects(n, rd, -1); err != nil {
		return err
	}
	if w.plan.kind == planAfterSend && n.alive {
		w.planned(n)
	}
	return nil
}

// planned crashes n as its plan says, unless no other complete member
// would be left to promote.
func (w *world) planned(n *simNode) {
	kind := w.plan.kind
	w.plan = crashPlan{}
	if w.victim(n) == nil {
		return
	}
	w.count.Inc("primary crashes " + planNames[kind])
	w.crash(n, "planned "+planNames[kind])
}

// simSnapshot is a primary's state at one store seq, in transfer.
type simSnapshot struct {
	at     stateKey
	kv     map[string]string
	digest uint64
}

// fetchLater has n's runtime ask from for a snapshot after a while.
func (w *world) fetchLater(n *simNode, from string) {
	w.agenda.Add(w.step+1+int64(w.rng.IntN(int(w.p.snap)+1)), func() error { return w.fetch(n, from) })
}

// fetch takes the snapshot n asked for, if n still wants it and from is
// still a primary that has installed all it received (the runtime serves
// snapshots only then); it retries while from cannot serve.
func (w *world) fetch(n *simNode, from string) error {
	// The snapshot's seq is not known before it is taken; checkpoint
	// replication accepts a snapshot by its source alone.
	if !n.alive || w.nodes[n.index] != n || !n.core.AcceptsSnapshot(from, 0) {
		return nil
	}
	src := w.node(from)
	if !src.alive || !src.core.ReadReady() {
		w.fetchLater(n, from)
		return nil
	}
	s := &simSnapshot{at: stateKey{src.id, src.seq}, kv: maps.Clone(src.kv), digest: src.digest}
	if err := w.record(s.at, s.digest); err != nil {
		return err
	}
	if src.seq > src.core.Detail().Applied {
		w.count.Inc("snapshots inside an open epoch")
	}
	src.core.Hold(src.seq)
	if err := w.drain(src); err != nil {
		return err
	}
	w.logf("%s serves %s a snapshot at %d", src.id, n.id, src.seq)
	w.agenda.Add(w.step+int64(w.rng.IntN(int(w.p.snap)+1)), func() error { return w.restore(n, from, s) })
	return nil
}

// restore installs snapshot s at n, if n still accepts it.
func (w *world) restore(n *simNode, from string, s *simSnapshot) error {
	if !n.alive || w.nodes[n.index] != n || !n.core.AcceptsSnapshot(from, s.at.seq) {
		return nil
	}
	role := n.core.Detail().Role
	w.count.Inc("snapshots installed by a " + role.String())
	if s.at.seq < n.seq {
		w.count.Inc("states sent back by a snapshot")
	}
	n.kv, n.digest, n.seq, n.at, n.pending = maps.Clone(s.kv), s.digest, s.at.seq, s.at, nil
	n.restored = n.cfg.Epoch
	n.core.Restored(from, s.at.seq)
	w.logf("%s (%s) restores the snapshot of %s at %d", n.id, role, s.at.origin, s.at.seq)
	return w.drain(n)
}
