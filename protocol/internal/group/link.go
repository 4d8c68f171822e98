package group

// Peer is a primary's state of its link to one backup or the joiner, as
// pb and checkpoint keep it; each core's own peer type embeds it and adds
// what it streams. Peers are made again with every configuration: nothing
// is sent to a peer before its Hello of the current epoch is accepted.
type Peer struct {
	ID      string
	Joining bool   // the configuration's joiner: does not count for commit
	Ready   bool   // a Hello of this epoch was accepted
	Ack     uint64 // the highest ack in this epoch
	Floor   uint64 // the peer holds every seq <= Floor (from its Hello or acks)
	Idle    Timer  // ticks without ack progress while what was sent is unacknowledged
}

// Base returns p itself, so that the functions below can reach the Peer
// embedded in a core's own peer type.
func (p *Peer) Base() *Peer { return p }

// Link is the constraint of the functions below: a pointer to a core's
// peer type, which embeds Peer.
type Link[P any] interface {
	*P
	Base() *Peer
}

// NewPeers lists a primary's links for a configuration: one per backup,
// then the joiner's if there is one; nil for none.
func NewPeers[P any, L Link[P]](members []string, joining string) []P {
	var ps []P
	add := func(id string, joining bool) {
		var p P
		b := L(&p).Base()
		b.ID, b.Joining = id, joining
		ps = append(ps, p)
	}
	for _, id := range members[1:] {
		add(id, false)
	}
	if joining != "" {
		add(joining, true)
	}
	return ps
}

// Find returns the link to the peer id, or nil.
func Find[P any, L Link[P]](ps []P, id string) *P {
	for i := range ps {
		if L(&ps[i]).Base().ID == id {
			return &ps[i]
		}
	}
	return nil
}

// MinAck is the lowest of seq and every peer's ack.
func MinAck[P any, L Link[P]](ps []P, seq uint64) uint64 {
	for i := range ps {
		seq = min(seq, L(&ps[i]).Base().Ack)
	}
	return seq
}

// CommitPoint is the output rule of both primary-backup cores: the
// lowest ack of any backup of the configuration, or the primary's own
// applied seq if lower. The joiner does not count.
func CommitPoint[P any, L Link[P]](ps []P, applied uint64) uint64 {
	for i := range ps {
		if p := L(&ps[i]).Base(); !p.Joining {
			applied = min(applied, p.Ack)
		}
	}
	return applied
}

// Up is a backup's or joiner's state of its link to the primary, as pb
// and checkpoint keep it, reset with every configuration.
type Up struct {
	Heard       bool   // the primary accepted this replica's history in this epoch and streams to it
	PrimaryLast uint64 // the primary's last seq as it last reported
	Quiet       Timer  // ticks since the last message from the primary
	AwaitSnap   bool   // the primary answered MsgSnapshotNeeded; waiting for Restored
	SnapLineage uint64 // the lineage a snapshot from the primary belongs to
	GapHello    bool   // a Hello went out for a gap and nothing was accepted since
	AckSent     uint64 // the highest ack sent in this epoch
}

// Synced reports whether the primary accepted this replica's history in
// this epoch and it is not waiting for a snapshot.
func (u *Up) Synced() bool { return u.Heard && !u.AwaitSnap }

// TickHello counts a tick and reports whether to say Hello again: the
// primary has been silent for limit ticks while this replica, whose
// history reaches last, is behind it (or has not heard from it at all in
// this epoch). A replica waiting for a snapshot does not.
func (u *Up) TickHello(last uint64, limit int) bool {
	return u.Quiet.Tick(!u.AwaitSnap && (!u.Heard || last < u.PrimaryLast), limit)
}

// AwaitSnapshot records that the primary told this replica to fetch a
// snapshot of its history, of lineage: until it is restored, nothing the
// primary streams is accepted.
func (u *Up) AwaitSnapshot(lineage uint64) {
	u.AwaitSnap, u.SnapLineage, u.Heard = true, lineage, false
}

// Hold keeps what a snapshot a primary serves needs: everything above the
// snapshot's seq, until every peer has acknowledged that seq, so that the
// replica installing it can continue from the primary's stream.
type Hold struct {
	on  bool
	seq uint64
}

// Keep holds everything above seq, or above the seq of a hold already in
// place if lower: every snapshot in transfer needs what follows it.
func (h *Hold) Keep(seq uint64) {
	if !h.on || seq < h.seq {
		h.seq = seq
	}
	h.on = true
}

// Release drops the hold: no snapshot of this primary's is in transfer.
func (h *Hold) Release() { h.on = false }

// Bound bounds t by the hold, if there is one, without ending it: while a
// peer is still fetching, its acks say nothing of the snapshot yet.
func (h *Hold) Bound(t uint64) uint64 {
	if h.on {
		return min(t, h.seq)
	}
	return t
}

// Limit bounds t, how far the primary could drop what it holds, by the
// hold; the hold ends once acked, the lowest ack of every peer, reaches
// its seq.
func (h *Hold) Limit(t, acked uint64) uint64 {
	if h.on && acked >= h.seq {
		h.on = false
	}
	if h.on {
		return min(t, h.seq)
	}
	return t
}
