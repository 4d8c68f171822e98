package pb

import (
	"fmt"

	"github.com/lockstep/lockstep/protocol/internal/group"
)

// StepMessage processes a decoded message from a peer. Messages of another epoch are
// dropped with ErrStaleEpoch (a backup still in an older configuration
// thus refuses a newer primary's entries until it has the configuration),
// and messages that do not fit this replica's role in the current
// configuration with ErrUnexpectedMessage; in both cases nothing changes.
func (c *Core) StepMessage(m Message) error {
	if err := c.view.Admit(m.envelope()); err != nil {
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

// peerOf returns the primary's link to the sender of m, which must be a
// backup or the joiner of the current configuration (only a primary has
// peers).
func (c *Core) peerOf(m Message) (*peer, error) {
	if p := group.Find(c.peers, m.From); p != nil {
		return p, nil
	}
	return nil, c.view.NotPeer(m.envelope())
}

// onHello serves a peer that (re)connects: from its last seq if its log
// is a prefix of this primary's and the log still reaches back that far,
// else with MsgSnapshotNeeded.
func (c *Core) onHello(m Message) error {
	p, err := c.peerOf(m)
	if err != nil {
		return err
	}
	if !(c.extends(m.Seq, m.Lineage) || c.committedPrefix(m)) || m.Seq < c.log.Base {
		p.Ready = false
		c.send(Message{Type: MsgSnapshotNeeded, To: p.ID, Seq: m.Seq, Lineage: c.lineage})
		return nil
	}
	p.Ready, p.next, p.Floor, p.greet = true, m.Seq+1, m.Seq, true
	p.Idle.Reset()
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

// committedPrefix reports whether a Hello names a log that is all
// committed (its Commit, the highest commit point the sender knows, is
// not below its Seq): committed entries are in every later primary's log
// at the same seqs, so such a log is a prefix of this one if it is no
// longer. It is how a replica that kept its state at a clean stop, whose
// lineage is unknown, rejoins without a snapshot.
func (c *Core) committedPrefix(m Message) bool {
	return m.Seq > 0 && m.Seq <= m.Commit && m.Seq <= c.log.Last()
}

// onEntries accepts the next consecutive entries from the primary for the
// runtime to apply. Duplicates are skipped; a gap drops the rest of the
// batch and asks the primary to start again with a Hello. The primary
// sends entries only after accepting this replica's Hello, so from now on
// this replica's log is of the primary's lineage.
func (c *Core) onEntries(m Message) error {
	if err := c.view.FromPrimary(m.envelope()); err != nil {
		return err
	}
	u := &c.up
	if u.AwaitSnap {
		return nil
	}
	u.Heard, u.PrimaryLast = true, m.Seq
	u.Quiet.Reset()
	c.lineage = m.Lineage
	c.known = max(c.known, m.Commit)
	c.barrier.Learn(m.Seq)
	n := len(c.ready.Apply)
	apply, resent, gap := c.log.Receive(m.Entries, c.ready.Apply)
	c.ready.Apply = apply
	if len(apply) > n {
		u.GapHello = false
	}
	if gap && !u.GapHello {
		c.sendHello()
		u.GapHello = true
	}
	if resent || len(m.Entries) == 0 {
		// The primary is sending again or greeting: our acks may have
		// been lost, so repeat the current one.
		u.AckSent = 0
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
	if !p.Ready {
		return c.view.EarlyAck(m.Seq, m.From)
	}
	seq := min(m.Seq, c.log.Last())
	if seq > p.Ack {
		p.Ack = seq
		p.Idle.Reset()
	}
	p.Floor = max(p.Floor, seq)
	return nil
}

// onSnapshotNeeded asks the runtime for a snapshot of the primary, unless
// the answer is to a Hello for a log this replica no longer has (it
// restored a snapshot since) or a snapshot is already awaited.
func (c *Core) onSnapshotNeeded(m Message) error {
	if err := c.view.FromPrimary(m.envelope()); err != nil {
		return err
	}
	c.up.Quiet.Reset()
	if c.up.AwaitSnap || m.Seq != c.log.Last() {
		return nil
	}
	c.up.AwaitSnapshot(m.Lineage)
	c.ready.NeedSnapshot = c.view.Primary
	return nil
}

// settle brings the derived state up to date after any event: it trims
// the log, and at the primary advances the commit point and streams
// applied entries to the peers, elsewhere acknowledges to the primary.
func (c *Core) settle() {
	c.released = max(c.released, c.trimPoint())
	c.log.TrimOver(c.retainFrom(), c.opts.RetainBytes)
	if c.view.Role == RolePrimary {
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
	if c.view.Role != RolePrimary {
		return min(c.applied, c.known)
	}
	t := group.MinAck(c.peers, c.applied)
	return c.hold.Limit(t, t)
}

// retainFrom is the newest seq the log may drop to keep within
// RetainBytes: nothing a peer needs, nor anything a peer being served
// from the retained history (one that rejoined behind) still lacks.
func (c *Core) retainFrom() uint64 {
	t := c.released
	for i := range c.peers {
		if p := &c.peers[i]; p.Ready {
			t = min(t, p.Floor)
		}
	}
	return t
}

// advanceCommit applies the output rule: the commit point is the smallest
// ack of any backup of this configuration, or the primary's own applied
// seq if lower. The joiner does not count.
func (c *Core) advanceCommit() {
	c.commit = max(c.commit, group.CommitPoint(c.peers, c.applied))
	if c.commit > c.commitSent {
		c.ready.Commit, c.commitSent = c.commit, c.commit
	}
}

// ackPrimary acknowledges the applied seq when it has grown since the
// last ack sent in this epoch, once the primary has accepted this log.
func (c *Core) ackPrimary() {
	u := &c.up
	if !c.view.Follows() || !u.Synced() {
		return
	}
	if c.applied > u.AckSent {
		c.send(Message{Type: MsgAck, To: c.view.Primary, Seq: c.applied})
		u.AckSent = c.applied
	}
}

// stream sends every accepted peer each applied entry it has not been
// sent, in batches of MaxBatch, or an empty MsgEntries to answer its Hello.
func (c *Core) stream() {
	for i := range c.peers {
		p := &c.peers[i]
		if !p.Ready {
			continue
		}
		if p.next <= c.log.Base {
			// Not reachable while the invariants hold; the gap this leaves
			// makes the peer say Hello and get MsgSnapshotNeeded.
			p.next = c.log.Base + 1
		}
		for p.next <= c.applied {
			hi := min(c.applied, p.next+uint64(c.opts.MaxBatch)-1)
			c.send(c.entries(p.ID, c.log.Slice(p.next, hi)))
			p.next, p.greet = hi+1, false
		}
		if p.greet {
			c.send(c.entries(p.ID, nil))
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
	c.send(Message{Type: MsgHello, To: c.view.Primary, Seq: c.log.Last(), Lineage: c.lineage, Commit: c.known})
	c.up.Quiet.Reset()
}

// send queues m, stamped with this replica's name and epoch. An ack right
// behind another ack to the same replica replaces it: acks are cumulative.
func (c *Core) send(m Message) {
	m.From, m.Epoch = c.opts.ID, c.view.Epoch
	msgs := c.ready.Messages
	if n := len(msgs); m.Type == MsgAck && n > 0 {
		if p := &msgs[n-1]; p.Type == MsgAck && p.To == m.To && p.Epoch == m.Epoch {
			p.Seq = max(p.Seq, m.Seq)
			return
		}
	}
	c.ready.Messages = append(msgs, m)
}
