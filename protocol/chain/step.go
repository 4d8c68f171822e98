package chain

import "fmt"

// Step processes a message from a neighbour. Messages of another epoch are
// dropped with ErrStaleEpoch, and messages that do not fit this replica's
// place in the current configuration with ErrUnexpectedMessage; in both
// cases nothing changes.
func (c *Core) Step(m Message) error {
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
		return fmt.Errorf("%w: successor %s has applied %d, beyond this replica's last %d", ErrUnexpectedMessage, m.From, m.Seq, c.log.Last())
	}
	d := &c.down
	if m.Seq < c.log.Base {
		d.ready = false
		c.send(Message{Type: MsgSnapshotNeeded, To: c.succ, Seq: c.log.Base})
		return nil
	}
	d.ready, d.next, d.floor, d.greet = true, m.Seq+1, m.Seq, true
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
		u.ackSent = 0
	}
	return nil
}

// onAck records how far everything downstream has applied.
func (c *Core) onAck(m Message) error {
	if err := c.fromNeighbour(m, c.succ, "successor"); err != nil {
		return err
	}
	d := &c.down
	seq := min(m.Seq, c.applied)
	if seq > d.ack {
		d.ack = seq
		d.idle.Reset()
	}
	d.floor = max(d.floor, seq)
	return nil
}

// onSnapshotNeeded asks the runtime for a snapshot, unless the answer is
// stale (this replica already holds what the predecessor could send from).
func (c *Core) onSnapshotNeeded(m Message) error {
	if err := c.fromNeighbour(m, c.pred, "predecessor"); err != nil {
		return err
	}
	u := &c.up
	u.quiet.Reset()
	if u.awaitSnap || c.applied >= m.Seq {
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
	c.log.Trim(c.trimPoint())
	c.advanceCommit()
	c.ackUpstream()
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

// joinerFloor is how far the joiner behind this tail (or single member) has
// provably applied, at least the oldest entry still held for it: the tail
// buffers only applied entries above it.
func (c *Core) joinerFloor() uint64 {
	return max(c.down.ack, c.log.Base)
}

// windowBase is the seq Propose's window counts from: at the head the
// oldest entry the successor has not acknowledged (so the log never holds
// more than Window entries, even just after a reconfiguration), at a
// single member its applied seq, held back to JoinWindow beyond a joiner.
func (c *Core) windowBase() uint64 {
	if c.role == RoleSingle {
		if c.succ != "" {
			return min(c.applied, c.joinerFloor()+uint64(c.opts.JoinWindow))
		}
		return c.applied
	}
	return c.log.Base
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
			return min(c.applied, c.joinerFloor()+uint64(c.opts.JoinWindow))
		}
		return c.applied
	case RoleMiddle:
		return min(c.applied, c.down.ack)
	}
	return 0
}

// ackUpstream sends the upstream ack when it has grown since the last one
// sent in this epoch.
func (c *Core) ackUpstream() {
	if c.pred == "" {
		return
	}
	if a := c.upstreamAck(); a > c.up.ackSent {
		c.send(Message{Type: MsgAck, To: c.pred, Seq: a})
		c.up.ackSent = a
	}
}

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
		c.send(Message{Type: MsgEntries, To: c.succ, Seq: c.reportedLast(), Entries: c.log.Slice(d.next, hi)})
		d.next, d.greet = hi+1, false
	}
	if d.greet {
		c.send(Message{Type: MsgEntries, To: c.succ, Seq: c.reportedLast()})
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
