package pb

import "fmt"

// Step processes a message from a peer. Messages of another epoch are
// dropped with ErrStaleEpoch (a backup still in an older configuration
// thus refuses a newer primary's entries until it has the configuration),
// and messages that do not fit this replica's role in the current
// configuration with ErrUnexpectedMessage; in both cases nothing changes.
func (c *Core) Step(m Message) error {
	if c.cfg.Epoch == 0 || m.Epoch != c.cfg.Epoch {
		return fmt.Errorf("%w: %s from %s in epoch %d, current %d", ErrStaleEpoch, m.Type, m.From, m.Epoch, c.cfg.Epoch)
	}
	if m.To != c.opts.ID {
		return fmt.Errorf("%w: %s for %q delivered to %q", ErrUnexpectedMessage, m.Type, m.To, c.opts.ID)
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

// peerOf returns the primary's link to the sender of m, which must be a
// backup or the joiner of the current configuration.
func (c *Core) peerOf(m Message) (*peer, error) {
	if c.role == RolePrimary {
		for i := range c.peers {
			if c.peers[i].id == m.From {
				return &c.peers[i], nil
			}
		}
	}
	return nil, fmt.Errorf("%w: %s from %s, which is not a peer of primary %q in epoch %d", ErrUnexpectedMessage, m.Type, m.From, c.primary, c.cfg.Epoch)
}

// fromPrimary checks that m comes from the primary to a backup or joiner.
func (c *Core) fromPrimary(m Message) error {
	if (c.role != RoleBackup && c.role != RoleJoining) || m.From != c.primary {
		return fmt.Errorf("%w: %s from %s to %s %s, primary %q in epoch %d", ErrUnexpectedMessage, m.Type, m.From, c.role, c.opts.ID, c.primary, c.cfg.Epoch)
	}
	return nil
}

// onHello serves a peer that (re)connects: from its last seq if its log
// is a prefix of this primary's and the log still reaches back that far,
// else with MsgSnapshotNeeded.
func (c *Core) onHello(m Message) error {
	p, err := c.peerOf(m)
	if err != nil {
		return err
	}
	if !c.extends(m.Seq, m.Lineage) || m.Seq < c.log.Base {
		p.ready = false
		c.send(Message{Type: MsgSnapshotNeeded, To: p.id, Seq: m.Seq, Lineage: c.lineage})
		return nil
	}
	p.ready, p.next, p.floor, p.idle, p.greet = true, m.Seq+1, m.Seq, 0, true
	return nil
}

// extends reports whether a log of lineage ending at seq is a prefix of
// this primary's log: it is empty, or of this primary's lineage (it was
// accepted before and has grown only with this primary's entries), or of
// the lineage this primary came from and no longer than this primary's
// log was when it took office (both are prefixes of one history). Anything
// else may hold entries this primary does not have.
func (c *Core) extends(seq, lineage uint64) bool {
	switch {
	case seq > c.log.Last():
		return false
	case seq == 0:
		return true
	case lineage == 0:
		return false
	case lineage == c.lineage:
		return true
	}
	return lineage == c.parent && seq <= c.fork
}

// onEntries accepts the next consecutive entries from the primary for the
// runtime to apply. Duplicates are skipped; a gap drops the rest of the
// batch and asks the primary to start again with a Hello. The primary
// sends entries only after accepting this replica's Hello, so from now on
// this replica's log is of the primary's lineage.
func (c *Core) onEntries(m Message) error {
	if err := c.fromPrimary(m); err != nil {
		return err
	}
	u := &c.up
	if u.awaitSnap {
		return nil
	}
	u.heard, u.predLast, u.quiet = true, m.Seq, 0
	c.lineage = m.Lineage
	c.known = max(c.known, m.Commit)
	if c.barrierPending {
		c.barrierPending, c.barrier = false, max(c.barrier, m.Seq)
	}
	resent := len(m.Entries) == 0
	for _, e := range m.Entries {
		last := c.log.Last()
		if e.Seq <= last {
			resent = true
			continue
		}
		if e.Seq > last+1 {
			if !u.gapHello {
				c.sendHello()
				u.gapHello = true
			}
			break
		}
		c.log.Append(e)
		c.ready.Apply = append(c.ready.Apply, e)
		u.gapHello = false
	}
	if resent {
		// The primary is sending again or greeting: our acks may have
		// been lost, so repeat the current one.
		u.ackSent = 0
	}
	return nil
}

// onAck records how far a peer has applied. Only a peer whose Hello was
// accepted in this epoch acks, so its ack speaks of this primary's entries.
func (c *Core) onAck(m Message) error {
	p, err := c.peerOf(m)
	if err != nil {
		return err
	}
	if !p.ready {
		return fmt.Errorf("%w: ack %d from %s before its Hello was accepted in epoch %d", ErrUnexpectedMessage, m.Seq, m.From, c.cfg.Epoch)
	}
	seq := min(m.Seq, c.log.Last())
	if seq > p.ack {
		p.ack, p.idle = seq, 0
	}
	p.floor = max(p.floor, seq)
	return nil
}

// onSnapshotNeeded asks the runtime for a snapshot of the primary, unless
// the answer is to a Hello for a log this replica no longer has (it
// restored a snapshot since) or a snapshot is already awaited.
func (c *Core) onSnapshotNeeded(m Message) error {
	if err := c.fromPrimary(m); err != nil {
		return err
	}
	u := &c.up
	u.quiet = 0
	if u.awaitSnap || m.Seq != c.log.Last() {
		return nil
	}
	u.awaitSnap, u.snapLineage, u.heard = true, m.Lineage, false
	c.ready.NeedSnapshot = c.primary
	return nil
}

// settle brings the derived state up to date after any event: it trims
// the log, and at the primary advances the commit point and streams
// applied entries to the peers, elsewhere acknowledges to the primary.
func (c *Core) settle() {
	c.log.Trim(c.trimPoint())
	if c.role == RolePrimary {
		c.advanceCommit()
		c.stream()
		return
	}
	c.ackPrimary()
}

// trimPoint is the newest seq the log may drop. The primary keeps what
// some peer has not acknowledged (and what a snapshot in transfer needs);
// any other replica keeps what is above the primary's commit point, since
// if it is promoted the other backups may still lack those entries.
func (c *Core) trimPoint() uint64 {
	if c.role != RolePrimary {
		return min(c.applied, c.known)
	}
	t := c.applied
	for i := range c.peers {
		t = min(t, c.peers[i].ack)
	}
	if c.holding && t >= c.hold {
		c.holding = false
	}
	if c.holding {
		t = min(t, c.hold)
	}
	return t
}

// advanceCommit applies the output rule: the commit point is the smallest
// ack of any backup of this configuration, or the primary's own applied
// seq if lower. The joiner does not count.
func (c *Core) advanceCommit() {
	p := c.applied
	for i := range c.peers {
		if !c.peers[i].joining {
			p = min(p, c.peers[i].ack)
		}
	}
	c.commit = max(c.commit, p)
	if c.commit > c.commitSent {
		c.ready.Commit, c.commitSent = c.commit, c.commit
	}
}

// ackPrimary acknowledges the applied seq when it has grown since the
// last ack sent in this epoch, once the primary has accepted this log.
func (c *Core) ackPrimary() {
	u := &c.up
	if c.role == RoleNone || !u.heard || u.awaitSnap {
		return
	}
	if c.applied > u.ackSent {
		c.send(Message{Type: MsgAck, To: c.primary, Seq: c.applied})
		u.ackSent = c.applied
	}
}

// stream sends every accepted peer each applied entry it has not been
// sent, in batches of MaxBatch, or an empty MsgEntries to answer its Hello.
func (c *Core) stream() {
	for i := range c.peers {
		p := &c.peers[i]
		if !p.ready {
			continue
		}
		if p.next <= c.log.Base {
			// Not reachable while the invariants hold; the gap this leaves
			// makes the peer say Hello and get MsgSnapshotNeeded.
			p.next = c.log.Base + 1
		}
		for p.next <= c.applied {
			hi := min(c.applied, p.next+uint64(c.opts.MaxBatch)-1)
			c.send(c.entries(p.id, c.log.Slice(p.next, hi)))
			p.next, p.greet = hi+1, false
		}
		if p.greet {
			c.send(c.entries(p.id, nil))
			p.greet = false
		}
	}
}

func (c *Core) entries(to string, ents []Entry) Message {
	return Message{Type: MsgEntries, To: to, Seq: c.log.Last(), Lineage: c.lineage, Commit: c.commit, Entries: ents}
}

// sendHello asks the primary to check this replica's log and stream from
// its last seq.
func (c *Core) sendHello() {
	c.send(Message{Type: MsgHello, To: c.primary, Seq: c.log.Last(), Lineage: c.lineage})
	c.up.quiet = 0
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
