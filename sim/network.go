package sim

import (
	"cmp"
	"math/rand/v2"
	"slices"
)

// NetworkOptions sets the delay of every message, in steps, drawn
// uniformly from [MinDelay, MaxDelay].
type NetworkOptions struct {
	MinDelay int64
	MaxDelay int64
}

// Packet is a message in flight from one node to another.
type Packet[M any] struct {
	From, To string
	Msg      M
	At       int64  // the step it is due
	id       uint64 // global send order, to break ties in delivery
}

// link is one direction between two nodes: a FIFO queue, as a TCP
// connection is.
type link[M any] struct {
	key   linkKey
	queue []Packet[M]
	cut   bool
}

type linkKey struct{ from, to string }

// Network is a set of FIFO links between named nodes. Each message gets a
// random delay, but never overtakes an earlier message on its link, so
// delays reorder messages only across links. A link can be reset (what a
// TCP reconnect does: everything in flight is lost) or cut until healed
// (a partition: everything in flight and everything sent meanwhile is
// lost).
//
// Network is not safe for concurrent use; a simulation is one goroutine.
type Network[M any] struct {
	rng   *rand.Rand
	opts  NetworkOptions
	links map[linkKey]*link[M]
	order []*link[M] // creation order, so iteration is deterministic
	ids   uint64
	sent  int
	lost  int
}

// NewNetwork returns an empty network drawing delays from rng.
func NewNetwork[M any](rng *rand.Rand, opts NetworkOptions) *Network[M] {
	opts.MinDelay = max(opts.MinDelay, 0)
	opts.MaxDelay = max(opts.MaxDelay, opts.MinDelay)
	return &Network[M]{rng: rng, opts: opts, links: map[linkKey]*link[M]{}}
}

func (n *Network[M]) link(from, to string) *link[M] {
	k := linkKey{from, to}
	l := n.links[k]
	if l == nil {
		l = &link[M]{key: k}
		n.links[k] = l
		n.order = append(n.order, l)
	}
	return l
}

// Send queues m from one node to another at step now. It reports false if
// the link is cut and the message was lost.
func (n *Network[M]) Send(now int64, from, to string, m M) bool {
	l := n.link(from, to)
	n.sent++
	if l.cut {
		n.lost++
		return false
	}
	at := now + n.opts.MinDelay + n.rng.Int64N(n.opts.MaxDelay-n.opts.MinDelay+1)
	if q := l.queue; len(q) > 0 {
		at = max(at, q[len(q)-1].At)
	}
	n.ids++
	l.queue = append(l.queue, Packet[M]{From: from, To: to, Msg: m, At: at, id: n.ids})
	return true
}

// Due removes and returns every packet due at or before step now, ordered
// by due step and then by send order: FIFO on every link.
func (n *Network[M]) Due(now int64) []Packet[M] {
	var out []Packet[M]
	for _, l := range n.order {
		i := 0
		for i < len(l.queue) && l.queue[i].At <= now {
			i++
		}
		if i > 0 {
			out = append(out, l.queue[:i]...)
			clear(l.queue[:i])
			l.queue = l.queue[i:]
		}
	}
	slices.SortFunc(out, func(a, b Packet[M]) int {
		return cmp.Or(cmp.Compare(a.At, b.At), cmp.Compare(a.id, b.id))
	})
	return out
}

// Reset drops everything in flight between a and b, both ways, and returns
// how many messages were lost.
func (n *Network[M]) Reset(a, b string) int {
	return n.drop(n.link(a, b)) + n.drop(n.link(b, a))
}

func (n *Network[M]) drop(l *link[M]) int {
	k := len(l.queue)
	clear(l.queue)
	l.queue = nil
	n.lost += k
	return k
}

// DropTo drops everything in flight to node, as when it crashes.
func (n *Network[M]) DropTo(node string) int {
	k := 0
	for _, l := range n.order {
		if l.key.to == node {
			k += n.drop(l)
		}
	}
	return k
}

// Cut resets the link between a and b and loses everything sent on it,
// both ways, until Heal.
func (n *Network[M]) Cut(a, b string) {
	n.Reset(a, b)
	n.link(a, b).cut = true
	n.link(b, a).cut = true
}

// Heal undoes Cut.
func (n *Network[M]) Heal(a, b string) {
	n.link(a, b).cut = false
	n.link(b, a).cut = false
}

// Partition cuts every link between a node of side and a node of other.
func (n *Network[M]) Partition(side, other []string) {
	for _, a := range side {
		for _, b := range other {
			n.Cut(a, b)
		}
	}
}

// HealAll heals every cut link.
func (n *Network[M]) HealAll() {
	for _, l := range n.order {
		l.cut = false
	}
}

// IsCut reports whether the link from a to b is cut.
func (n *Network[M]) IsCut(a, b string) bool {
	l := n.links[linkKey{a, b}]
	return l != nil && l.cut
}

// InFlight counts the messages queued on every link.
func (n *Network[M]) InFlight() int {
	k := 0
	for _, l := range n.order {
		k += len(l.queue)
	}
	return k
}

// Stats returns how many messages were sent and how many of them were lost
// to resets, cuts and crashes.
func (n *Network[M]) Stats() (sent, lost int) { return n.sent, n.lost }
