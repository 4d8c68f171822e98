package checkpoint

import (
	"fmt"

	"github.com/lockstep/lockstep/protocol/internal/group"
)

// StepMessage processes a decoded message from a peer. Messages of another
// epoch are dropped with ErrStaleEpoch (a backup still in an older
// configuration thus refuses a newer primary's checkpoints until it has
// the configuration), and messages that do not fit this replica's role in the
// current configuration with ErrUnexpectedMessage; in both cases nothing
// changes.
func (c *Core) StepMessage(m Message) error {
	if err := c.view.Admit(m.envelope()); err != nil {
		return err
	}
	var err error
	switch m.Type {
	case MsgHello:
		err = c.onHello(m)
	case MsgAccept:
		err = c.onAccept(m)
	case MsgChunk:
		err = c.onChunk(m)
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
// backup or the joiner of the current configuration (only a primary has
// peers).
func (c *Core) peerOf(m Message) (*peer, error) {
	if p := group.Find(c.peers, m.From); p != nil {
		return p, nil
	}
	return nil, c.view.NotPeer(m.envelope())
}

// onHello serves a peer that (re)connects: from its state on if that is
// provably a point of this primary's history that the held checkpoints
// continue, else with MsgSnapshotNeeded. Either way the peer's stream
// restarts, so a Hello after a gap resends everything the peer lacks.
func (c *Core) onHello(m Message) error {
	p, err := c.peerOf(m)
	if err != nil {
		return err
	}
	if !c.accepts(m.Seq, m.Lineage) {
		// Its acks no longer speak of its state: it goes back to a
		// snapshot and acks again once that is accepted.
		p.Ready, p.snap, p.Ack = false, true, 0
		c.send(Message{Type: MsgSnapshotNeeded, To: p.ID, Seq: m.Seq, Prev: m.Lineage, Lineage: c.lineage})
		return nil
	}
	p.Ready, p.snap, p.sent, p.Floor = true, false, m.Seq, m.Seq
	p.Idle.Reset()
	c.send(Message{Type: MsgAccept, To: p.ID, Seq: m.Seq, Head: c.last, Lineage: c.lineage})
	return nil
}

// accepts reports whether a peer's state at store seq seq of lineage is a
// point of this primary's history from which its held checkpoints lead to
// its own state:
//
//   - seq is at least base, so every checkpoint after seq is still held;
//   - and the state is empty (seq 0), or of this primary's lineage (it was
//     reached only by installing this primary's checkpoints or restoring
//     its snapshot, and one primary's history is linear), or exactly this
//     primary's state when it took office, of the lineage it came from.
//
// Anything else may hold writes this primary never had, or lack some that
// no held checkpoint carries: when in doubt, a snapshot.
func (c *Core) accepts(seq, lineage uint64) bool {
	switch {
	case seq < c.base || lineage == lineageDirty:
		return false
	case seq == 0:
		return true
	case lineage == 0:
		return false
	case lineage == c.lineage:
		return true
	}
	return lineage == c.parent && seq == c.fork
}

// onAccept notes that the primary accepted this replica's state: it will
// stream from there, and the acks may have been lost, so the current one
// is repeated.
func (c *Core) onAccept(m Message) error {
	if err := c.view.FromPrimary(m.envelope()); err != nil {
		return err
	}
	if c.up.AwaitSnap {
		return nil
	}
	c.heardFrom(m)
	c.up.reack, c.up.GapHello = true, false
	return nil
}

// heardFrom records what any Accept or chunk says: the primary accepted
// this state, so from now on it is a point of the primary's lineage; and
// its first message in this epoch sets the barrier of a joiner made
// backup.
func (c *Core) heardFrom(m Message) {
	u := &c.up
	u.Heard, u.PrimaryLast = true, m.Head
	u.Quiet.Reset()
	c.lineage = m.Lineage
	c.barrier.Learn(m.Head)
}

// onChunk adds a chunk to the checkpoint being received. Checkpoints the
// replica already has are skipped (acking again on their commit marker:
// the primary resends when acks are lost); a checkpoint that does not
// continue this state, or a chunk that does not continue the bytes
// received, drops the partial checkpoint and asks the primary to start
// again with a Hello.
func (c *Core) onChunk(m Message) error {
	if err := c.view.FromPrimary(m.envelope()); err != nil {
		return err
	}
	if c.up.AwaitSnap {
		return nil
	}
	c.heardFrom(m)
	switch {
	case m.Seq <= c.last:
		if m.Final {
			c.up.reack = true
		}
	case m.Prev > c.last || !c.continues(m):
		c.gap()
	default:
		c.assemble(m)
	}
	return nil
}

// continues reports whether chunk m continues the partial checkpoint, or
// starts a new one.
func (c *Core) continues(m Message) bool {
	p := &c.up.part
	return m.Offset == 0 || (p.open && p.seq == m.Seq && uint64(len(p.data)) == m.Offset)
}

// assemble appends chunk m and, on the commit marker, hands the complete
// checkpoint to the runtime. A checkpoint in one chunk is handed over
// without a copy.
func (c *Core) assemble(m Message) {
	p := &c.up.part
	if m.Offset == 0 {
		*p = partial{open: true, seq: m.Seq}
	}
	if m.Offset == 0 && m.Final {
		p.data = m.Data
	} else {
		p.data = append(p.data, m.Data...)
	}
	c.up.GapHello = false
	if !m.Final {
		return
	}
	c.ready.Install = append(c.ready.Install, Checkpoint{Seq: m.Seq, Data: p.data})
	c.last = m.Seq
	*p = partial{}
}

// gap drops the partial checkpoint and says Hello, once until the primary
// answers or something continues.
func (c *Core) gap() {
	u := &c.up
	u.part = partial{}
	if !u.GapHello {
		c.sendHello()
		u.GapHello = true
	}
}

// onAck records how far a peer has installed (Seq), which counts for the
// commit point and the window, and how far it has received (Head), which
// spares it resends of what it holds but has not installed yet. Only a
// peer whose Hello was accepted in this epoch acks, so its ack speaks of
// this primary's history.
func (c *Core) onAck(m Message) error {
	p, err := c.peerOf(m)
	if err != nil {
		return err
	}
	if !p.Ready {
		return c.view.EarlyAck(m.Seq, m.From)
	}
	if m.Seq > p.Ack {
		p.Ack = m.Seq
		p.Idle.Reset()
	}
	if r := max(m.Seq, m.Head); r > p.Floor {
		p.Floor = r
		p.Idle.Reset()
	}
	return nil
}

// onSnapshotNeeded asks the runtime for a snapshot of the primary, unless
// the answer is to a Hello for a state this replica no longer has (it
// restored a snapshot since, which changed its lineage if not its seq)
// or a snapshot is already awaited.
func (c *Core) onSnapshotNeeded(m Message) error {
	if err := c.view.FromPrimary(m.envelope()); err != nil {
		return err
	}
	u := &c.up
	u.Quiet.Reset()
	if u.AwaitSnap || m.Seq != c.last || m.Prev != c.lineage {
		return nil
	}
	u.AwaitSnapshot(m.Lineage)
	u.part = partial{}
	c.ready.NeedSnapshot = c.view.Primary
	return nil
}

// settle brings the derived state up to date after any event: at the
// primary it drops checkpoints no one needs, advances the commit point
// and streams checkpoints to the peers; elsewhere it acknowledges.
func (c *Core) settle() {
	if c.view.Role == RolePrimary {
		c.trim()
		c.advanceCommit()
		c.stream()
		return
	}
	c.ackPrimary()
}

// trim drops the held checkpoints every counted peer has acknowledged,
// except those a snapshot in transfer needs. A peer fetching a snapshot
// is not counted (the hold keeps what it will need), and the hold lasts
// until every peer has had its Hello of this epoch accepted and has
// acknowledged the hold's seq. An ack of 0 says nothing before that: a
// fetching peer's ack is reset to 0, and a peer's ack starts at 0 in a
// new epoch, so a hold at seq 0 (a primary that took office empty) would
// otherwise count as acknowledged at once, and the peer restoring that
// snapshot would need another.
func (c *Core) trim() {
	counted, all, unsettled := c.last, c.last, false
	for i := range c.peers {
		p := &c.peers[i]
		all = min(all, p.Ack)
		unsettled = unsettled || p.snap || !p.Ready
		if !p.snap {
			counted = min(counted, p.Ack)
		}
	}
	limit := c.hold.Bound(counted)
	if !unsettled {
		limit = c.hold.Limit(counted, all)
	}
	n := c.heldUpTo(limit)
	if n == 0 {
		return
	}
	c.base = c.held[n-1].Seq
	clear(c.held[:n])
	c.held = c.held[n:]
	if len(c.held) == 0 {
		c.held = nil
	}
}

// advanceCommit applies the output rule: the commit point is the lowest
// ack of any backup of this configuration, or the primary's own applied
// seq if lower (a new primary may not have installed all it received).
// The joiner does not count.
func (c *Core) advanceCommit() {
	c.commit = max(c.commit, group.CommitPoint(c.peers, c.applied))
	if c.commit > c.commitSent {
		c.ready.Commit, c.commitSent = c.commit, c.commit
	}
}

// ackPrimary acknowledges the applied seq, and the received one with it,
// when the applied seq has grown since the last ack sent in this epoch,
// once the primary has accepted this state. Receipt alone is not acked,
// which would double the acks: a primary that resends to a replica slow
// to install learns from the ack of the duplicate not to resend again.
func (c *Core) ackPrimary() {
	u := &c.up
	if !c.view.Follows() || !u.Synced() {
		return
	}
	if c.applied > u.AckSent || u.reack {
		c.send(Message{Type: MsgAck, To: c.view.Primary, Seq: c.applied, Head: c.last})
		u.AckSent, u.reack = c.applied, false
	}
}

// stream sends every accepted peer each held checkpoint it has not been
// sent, in order.
func (c *Core) stream() {
	for i := range c.peers {
		p := &c.peers[i]
		if !p.Ready {
			continue
		}
		for _, h := range c.held[c.heldUpTo(p.sent):] {
			c.sendCheckpoint(p.ID, h)
			p.sent = h.Seq
		}
	}
}

// sendCheckpoint sends h to a peer as chunks of at most MaxChunk bytes,
// the last one flagged Final (the commit marker).
func (c *Core) sendCheckpoint(to string, h held) {
	data := h.Data
	var off int
	for {
		n := min(len(data)-off, c.opts.MaxChunk)
		final := off+n == len(data)
		c.send(Message{Type: MsgChunk, To: to, Seq: h.Seq, Prev: h.prev, Head: c.last, Lineage: c.lineage,
			Offset: uint64(off), Final: final, Data: data[off : off+n : off+n]})
		if final {
			return
		}
		off += n
	}
}

// sendHello asks the primary to check this replica's state and stream
// from it.
func (c *Core) sendHello() {
	c.send(Message{Type: MsgHello, To: c.view.Primary, Seq: c.last, Lineage: c.lineage})
	c.up.Quiet.Reset()
}

// send queues m, stamped with this replica's name and epoch. An ack right
// behind another ack to the same replica replaces it: acks are cumulative.
func (c *Core) send(m Message) {
	m.From, m.Epoch = c.opts.ID, c.view.Epoch
	msgs := c.ready.Messages
	if n := len(msgs); m.Type == MsgAck && n > 0 {
		if p := &msgs[n-1]; p.Type == MsgAck && p.To == m.To && p.Epoch == m.Epoch {
			p.Seq, p.Head = max(p.Seq, m.Seq), max(p.Head, m.Head)
			return
		}
	}
	c.ready.Messages = append(msgs, m)
}
