package chain

import "fmt"

// StepMessage processes a decoded message from a neighbour. Messages of another epoch are
// dropped with ErrStaleEpoch, and messages that do not fit this replica's
// place in the current configuration with ErrUnexpectedMessage; in both
// cases nothing changes.
func (c *Core) StepMessage(m Message) error {
	if err := errs.Admit(c.opts.ID, c.cfg.Epoch, m.envelope()); err != nil {
		return err
	}
	var err error
	switch m.Type {
	case MsgHello:
		err = c.onHello(m)
	case MsgEntries:
		err = c.onEntries(m)
	case MsgAck:
		err = c.onAck(m)
	case MsgSnapshotNeeded:
		err = c.onSnapshotNeeded(m)
	default:
		err = fmt.Errorf("%w: type %d from %s", ErrUnexpectedMessage, m.Type, m.From)
	}
	if err != nil {
		return err
	}
	c.settle()
	return nil
}

// fromNeighbour checks that m comes from want, the predecessor or the
// successor its type calls for.
func (c *Core) fromNeighbour(m Message, want, what string) error {
	if want == "" || m.From != want {
		return fmt.Errorf("%w: %s from %s, but %s is %q in epoch %d", ErrUnexpectedMessage, m.Type, m.From, what, want, c.cfg.Epoch)
	}
	return nil
}

// onHello serves a successor that (re)connects: from its applied seq if the
// log still reaches back that far, else with MsgSnapshotNeeded.
func (c *Core) onHello(m Message) error {
	if err := c.fromNeighbour(m, c.succ, "successor"); err != nil {
		return err
	}
	if m.Seq > c.log.Last() {
		if !c.complete() {
			// A joiner that restarted on a kept state, all committed, may
			// be ahead of a tail that has not caught up with what the old
			// tail committed. It says Hello again after HelloTicks, when
			// this replica may have reached it.
			return nil
		}
		return fmt.Errorf("%w: successor %s has applied %d, beyond this replica's last %d", ErrUnexpectedMessage, m.From, m.Seq, c.log.Last())
	}
	d := &c.down
	// A successor's applied seq never falls within an epoch, so a Hello
	// that reports less than an ack already did is stale: with the tail
	// acking the head directly, the head may have trimmed past it before
	// it arrived. The successor holds at least floor either way.
	d.floor = max(d.floor, m.Seq)
	if d.floor < c.log.Base {
		d.ready, d.asked = false, true
		d.askAgain.Reset()
		c.send(Message{Type: MsgSnapshotNeeded, To: c.succ, Seq: c.log.Base})
		return nil
	}
	d.ready, d.next, d.greet, d.asked = true, d.floor+1, true, false
	d.idle.Reset()
	if c.succIsEnd {
		// The end of the chain reports its own applied seq: an ack.
		d.ack = max(d.ack, min(m.Seq, c.applied))
	}
	return nil
}

// onEntries accepts the next consecutive entries from the predecessor for
// the runtime to apply. Duplicates are skipped; a gap drops the rest of the
// batch and asks the predecessor to start again with a Hello.
func (c *Core) onEntries(m Message) error {
	if err := c.fromNeighbour(m, c.pred, "predecessor"); err != nil {
		return err
	}
	u := &c.up
	u.heard, u.predLast = true, m.Seq
	u.quiet.Reset()
	if u.awaitSnap {
		return nil
	}
	c.barrier.Learn(m.Seq)
	if c.role == RoleMiddle && m.Acked > 0 {
		// The predecessor's ack covers this replica's successor too. A
		// tail must not take it: with a joiner, its own ack upstream is
		// not the joiner's.
		c.learnAck(m.Acked)
	}
	n := len(c.ready.Apply)
	apply, resent, gap := c.log.Receive(m.Entries, c.ready.Apply)
	c.ready.Apply = apply
	if len(apply) > n {
		u.gapHello = false
	}
	if gap && !u.gapHello {
		c.sendHello()
		u.gapHello = true
	}
	if resent || len(m.Entries) == 0 {
		// The predecessor is sending again or greeting: our acks may have
		// been lost, so repeat the current one.
		u.ackSent, u.headAck = 0, 0
	}
	return nil
}

// onAck records how far everything downstream has applied. The head
// takes acks from its successor and, in a chain of three or more, straight
// from the tail (see ackUpstream).
func (c *Core) onAck(m Message) error {
	if c.role != RoleHead || m.From != c.cfg.Members[len(c.cfg.Members)-1] {
		if err := c.fromNeighbour(m, c.succ, "successor"); err != nil {
			return err
		}
	}
	c.learnAck(m.Seq)
	return nil
}

// learnAck records that every replica from the successor to the end of
// the chain has applied up to seq, from an ack or, at a middle, from the
// Acked of its predecessor's MsgEntries.
func (c *Core) learnAck(seq uint64) {
	d := &c.down
	seq = min(seq, c.applied)
	if seq > d.ack {
		d.ack = seq
		d.idle.Reset()
	}
	d.floor = max(d.floor, seq)
}

// onSnapshotNeeded asks the runtime for a snapshot, unless the answer is
// stale (this replica already holds what the predecessor could send from).
func (c *Core) onSnapshotNeeded(m Message) error {
	if err := c.fromNeighbour(m, c.pred, "predecessor"); err != nil {
		return err
	}
	u := &c.up
	u.quiet.Reset()
	if u.awaitSnap {
		return nil
	}
	if c.applied >= m.Seq {
		// Stale, or asked again because the Hello this replica sent
		// after its snapshot was lost: say where it stands.
		c.sendHello()
		return nil
	}
	u.awaitSnap, u.snapFrom = true, m.Seq
	c.ready.NeedSnapshot = c.pred
	return nil
}

// settle brings the derived state up to date after any event: it trims the
// log, advances the commit point, acknowledges upstream and streams applied
// entries downstream.
func (c *Core) settle() {
	c.released = max(c.released, c.trimPoint())
	c.log.TrimOver(c.retainFrom(), c.opts.RetainBytes)
	c.advanceCommit()
	c.ackUpstream(false)
	c.stream()
}

// trimPoint is the newest seq the log may drop: everything the successor
// acknowledged (or, without one, applied), but nothing above a hold.
func (c *Core) trimPoint() uint64 {
	t := c.applied
	if c.succ != "" {
		t = min(t, c.down.ack)
		if c.holding && c.down.ack >= c.hold {
			c.holding = false
		}
	}
	if c.holding {
		t = min(t, c.hold)
	}
	return t
}

// retainFrom is the newest seq the log may drop to keep within
// RetainBytes: nothing a peer needs, nor anything a successor being served
// from the retained history (a joiner that restarted behind) still lacks.
func (c *Core) retainFrom() uint64 {
	if d := &c.down; c.succ != "" && d.ready {
		return min(c.released, d.floor)
	}
	return c.released
}

// joinerFloor is how far the joiner behind this tail (or single member) has
// provably applied, or at least where the tail stood when nothing was held
// for it yet (released): the tail buffers only applied entries above it.
func (c *Core) joinerFloor() uint64 {
	return max(c.down.ack, c.released)
}

// joinAllowance is how many entries beyond its joiner's floor a tail (or
// single member) may apply and ack: JoinWindow, or as many as fit in
// RetainBytes at the log's mean entry size if that is more, since a
// backlog that fits is one the tail would retain anyway.
func (c *Core) joinAllowance() uint64 {
	w := uint64(c.opts.JoinWindow)
	if c.opts.RetainBytes <= 0 || c.log.Len() == 0 {
		return w
	}
	mean := max(uint64(c.log.Bytes())/uint64(c.log.Len()), 1)
	return max(w, uint64(c.opts.RetainBytes)/mean)
}

// windowBase is the seq Propose's window counts from: at the head the
// oldest entry the successor has not acknowledged (so the log never holds
// more than Window entries, even just after a reconfiguration), at a
// single member its applied seq, held back to JoinWindow beyond a joiner.
func (c *Core) windowBase() uint64 {
	if c.role == RoleSingle {
		if c.succ != "" {
			return min(c.applied, c.joinerFloor()+c.joinAllowance())
		}
		return c.applied
	}
	return c.released
}

// advanceCommit moves the commit point: the applied seq at the end of the
// members (tail or single), the successor's ack elsewhere.
func (c *Core) advanceCommit() {
	var p uint64
	switch c.role {
	case RoleSingle, RoleTail:
		p = c.applied
	case RoleHead, RoleMiddle:
		p = min(c.applied, c.down.ack)
	case RoleJoining:
		// A joiner applies only what the tail streams, and the tail
		// streams only what it applied: entries it committed.
		p = c.applied
	default:
		return
	}
	c.commit = max(c.commit, p)
	if (c.role == RoleHead || c.role == RoleSingle) && c.commit > c.commitSent {
		c.ready.Commit, c.commitSent = c.commit, c.commit
	}
}

// upstreamAck is the seq this replica acknowledges to its predecessor:
// its own applied seq at the end of the chain, its successor's ack in the
// middle, and at a tail with a joiner its applied seq held back to
// JoinWindow beyond the joiner.
func (c *Core) upstreamAck() uint64 {
	switch c.role {
	case RoleJoining:
		return c.applied
	case RoleTail:
		if c.succ != "" {
			return min(c.applied, c.joinerFloor()+c.joinAllowance())
		}
		return c.applied
	case RoleMiddle:
		return min(c.applied, c.down.ack)
	}
	return 0
}

// ackUpstream sends the upstream ack when it has grown since the last one
// sent in this epoch; tick sends a lazy one (below) that is still waiting.
//
// Only one ack is urgent: the tail's, which commits writes at the head.
// The tail of a chain of three or more sends it straight to the head
// rather than through every middle, so a write's reply waits for one hop
// back instead of one per replica. A middle needs acks only to trim its
// log and to see that its successor is alive, and it also learns the
// head's ack from every MsgEntries (Acked), so acks to a middle's or such
// a tail's predecessor are lazy: they go on a tick, or once they have
// grown by lazyAckGap. A joiner, and the tail of a two-member chain, ack
// their predecessor at once.
func (c *Core) ackUpstream(tick bool) {
	if c.pred == "" {
		return
	}
	a := c.upstreamAck()
	head := c.directAckTarget()
	if head != "" && a > c.up.headAck {
		c.send(Message{Type: MsgAck, To: head, Seq: a})
		c.up.headAck = a
	}
	if a <= c.up.ackSent {
		return
	}
	if c.lazyAcks() && !tick && a-c.up.ackSent < c.lazyAckGap() {
		return
	}
	c.send(Message{Type: MsgAck, To: c.pred, Seq: a})
	c.up.ackSent = a
}

// directAckTarget is the head when this replica is the tail of a chain of
// three or more members, else "".
func (c *Core) directAckTarget() string {
	if c.role != RoleTail || len(c.cfg.Members) < 3 {
		return ""
	}
	return c.cfg.Members[0]
}

// lazyAcks reports whether acks to the predecessor may wait for a tick:
// the head hears them some faster way (see ackUpstream).
func (c *Core) lazyAcks() bool {
	return c.role == RoleMiddle || c.directAckTarget() != ""
}

// lazyAckGap is how far a lazy ack may fall behind between ticks. It
// bounds how many entries a middle's log holds beyond the head's window
// when it cannot learn the head's ack (its predecessor has nothing to
// send).
func (c *Core) lazyAckGap() uint64 { return uint64(max(c.opts.Window/4, 1)) }

// stream sends the successor every applied entry it has not been sent, in
// batches of MaxBatch, or an empty MsgEntries to answer its Hello.
func (c *Core) stream() {
	d := &c.down
	if c.succ == "" || !d.ready || c.barrier.Pending {
		// An incomplete replica cannot vouch for what its successor must
		// reach (reportedLast) until its own barrier is known.
		return
	}
	if d.next <= c.log.Base {
		// Not reachable while the invariants hold; the gap this leaves
		// makes the successor say Hello and get MsgSnapshotNeeded.
		d.next = c.log.Base + 1
	}
	for d.next <= c.applied {
		hi := min(c.applied, d.next+uint64(c.opts.MaxBatch)-1)
		c.send(Message{Type: MsgEntries, To: c.succ, Seq: c.reportedLast(), Acked: d.ack, Entries: c.log.Slice(d.next, hi)})
		d.next, d.greet = hi+1, false
	}
	if d.greet {
		c.send(Message{Type: MsgEntries, To: c.succ, Seq: c.reportedLast(), Acked: d.ack})
		d.greet = false
	}
}

// reportedLast is the Seq of MsgEntries: this replica's last seq, or its
// barrier if higher, since a successor must reach the barrier too before it
// holds every committed entry.
func (c *Core) reportedLast() uint64 {
	return max(c.log.Last(), c.barrier.Seq)
}

// sendHello asks the predecessor to stream from this replica's applied seq.
func (c *Core) sendHello() {
	c.send(Message{Type: MsgHello, To: c.pred, Seq: c.applied})
	c.up.quiet.Reset()
}

// send queues m, stamped with this replica's name and epoch. An ack right
// behind another ack to the same replica replaces it: acks are cumulative.
func (c *Core) send(m Message) {
	m.From, m.Epoch = c.opts.ID, c.cfg.Epoch
	msgs := c.ready.Messages
	if n := len(msgs); m.Type == MsgAck && n > 0 {
		if p := &msgs[n-1]; p.Type == MsgAck && p.To == m.To && p.Epoch == m.Epoch {
			p.Seq = max(p.Seq, m.Seq)
			return
		}
	}
	c.ready.Messages = append(msgs, m)
}
