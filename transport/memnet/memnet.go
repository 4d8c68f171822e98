// Package memnet is an in-memory network for replicas: the same contract
// as package transport (ordered, lossy message links and snapshot
// streams between named nodes), without sockets. It lets whole groups of
// real replica runtimes run in one process, as hashicorp/raft's
// InmemTransport does, with partitions a test switches on and off.
//
// It lives beside package transport, not under internal/, because it is
// supported code with the same contract, meant for the runtime's tests
// (replica/replicatest), not a mock of one test's needs. Its links run on
// goroutines, so its runs are not repeatable event for event; the
// deterministic whole-node simulation (nodesim) drives its replicas over
// sim.Network on one goroutine instead.
//
// The promises match the TCP transport's: Send never blocks and copies
// its payload; the messages of one link (a sender, a receiver) arrive in
// the order they were sent, on one goroutine per link, each burst of
// messages queued together followed by one BurstDone; a message that
// cannot be delivered is dropped, and the protocols above retransmit.
package memnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// Errors OpenStream returns, wrapped with %w.
var (
	// ErrClosed: the network has been closed.
	ErrClosed = errors.New("lockstep: memnet closed")
	// ErrUnknownPeer: no node of that name was added.
	ErrUnknownPeer = errors.New("lockstep: memnet unknown peer")
	// ErrUnreachable: the link between the two nodes is cut.
	ErrUnreachable = errors.New("lockstep: memnet peer unreachable")
)

// Handler is what a node of the network receives: replica.Replica's
// Deliver, BurstDone and ServeSnapshot. Deliver and BurstDone for one
// sender are called on one goroutine, in order; different senders'
// links call concurrently, as the TCP transport's readers do.
type Handler interface {
	Deliver(from string, payload []byte)
	BurstDone(from string)
	ServeSnapshot(ctx context.Context, from string, req []byte, w io.Writer) error
}

// DefaultQueue is how many messages a link holds undelivered before Send
// drops: the TCP transport's queue bound is in the same range.
const DefaultQueue = 4096

// Network connects the nodes added to it. All methods are safe for
// concurrent use.
type Network struct {
	ctx    context.Context
	cancel context.CancelFunc
	queue  int
	wg     sync.WaitGroup

	mu       sync.Mutex
	nodes    map[string]*node
	links    map[pair]*link
	cut      map[pair]bool // directed links that drop everything
	isolated map[string]bool
	streams  map[pair]map[*io.PipeWriter]struct{}

	stats counters
}

// node is one registration of a name; a new one (Add again) gets new
// links, so nothing queued for the old handler reaches the new one.
type node struct{ h Handler }

// pair is a directed link, from a sender to a receiver.
type pair struct{ from, to string }

// Stats count what the network did, for tests that check a partition
// really dropped something.
type Stats struct {
	Delivered      uint64 // handed to a receiver's Deliver
	Dropped        uint64 // refused at Send or lost in flight (cut, full, closed, unknown peer)
	Streams        uint64 // snapshot streams opened
	StreamsRefused uint64 // snapshot streams refused by a cut
}

type counters struct {
	delivered, dropped, streams, streamsRefused atomic.Uint64
}

// New returns an empty network; queue bounds each link (DefaultQueue if
// not positive).
func New(queue int) *Network {
	if queue <= 0 {
		queue = DefaultQueue
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Network{
		ctx: ctx, cancel: cancel, queue: queue,
		nodes: map[string]*node{}, links: map[pair]*link{}, cut: map[pair]bool{},
		isolated: map[string]bool{}, streams: map[pair]map[*io.PipeWriter]struct{}{},
	}
}

// Stats returns the network's counters so far.
func (n *Network) Stats() Stats {
	return Stats{
		Delivered: n.stats.delivered.Load(), Dropped: n.stats.dropped.Load(),
		Streams: n.stats.streams.Load(), StreamsRefused: n.stats.streamsRefused.Load(),
	}
}

// Add registers a node and returns its endpoint, the replica.Sender and
// replica.SnapshotFetcher to Attach. Adding a name again replaces its
// handler, as a restarted process replaces the old one at its address.
func (n *Network) Add(name string, h Handler) *Endpoint {
	n.mu.Lock()
	n.nodes[name] = &node{h: h}
	n.mu.Unlock()
	return &Endpoint{net: n, name: name}
}

// Close stops every link, breaks every open stream and waits for the
// network's goroutines. Messages still queued are dropped.
func (n *Network) Close() {
	n.cancel()
	n.mu.Lock()
	for _, l := range n.links {
		l.stop()
	}
	for p := range n.streams {
		n.breakStreamsLocked(p, ErrClosed)
	}
	n.mu.Unlock()
	n.wg.Wait()
}

// Cut drops every message between a and b, both ways, and breaks their
// open snapshot streams, until Heal.
func (n *Network) Cut(a, b string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range []pair{{a, b}, {b, a}} {
		n.cut[p] = true
		n.breakStreamsLocked(p, ErrUnreachable)
	}
}

// Heal undoes Cut(a, b).
func (n *Network) Heal(a, b string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.cut, pair{a, b})
	delete(n.cut, pair{b, a})
}

// Isolate cuts name off from every node, present and future, until
// Rejoin: the partition of one node from the rest of its group.
func (n *Network) Isolate(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.isolated[name] = true
	for p := range n.streams {
		if p.from == name || p.to == name {
			n.breakStreamsLocked(p, ErrUnreachable)
		}
	}
}

// Rejoin undoes Isolate(name); links cut one by one stay cut.
func (n *Network) Rejoin(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.isolated, name)
}

// reachableLocked reports whether messages may travel from one node to
// another now; mu is held.
func (n *Network) reachableLocked(from, to string) bool {
	return !n.cut[pair{from, to}] && !n.isolated[from] && !n.isolated[to]
}

func (n *Network) reachable(from, to string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.reachableLocked(from, to)
}

// Endpoint is one node's side of the network: it implements
// replica.Sender and replica.SnapshotFetcher.
type Endpoint struct {
	net  *Network
	name string
}

// Send queues a copy of payload for to and reports whether it was
// queued. It never blocks: a cut link, an unknown peer, a full queue or
// a closed network drop the message.
func (e *Endpoint) Send(to string, payload []byte) bool {
	n := e.net
	n.mu.Lock()
	if n.ctx.Err() != nil || !n.reachableLocked(e.name, to) {
		n.mu.Unlock()
		n.stats.dropped.Add(1)
		return false
	}
	dst, ok := n.nodes[to]
	if !ok {
		n.mu.Unlock()
		n.stats.dropped.Add(1)
		return false
	}
	l := n.linkLocked(pair{e.name, to}, dst)
	n.mu.Unlock()
	if !l.push(append([]byte(nil), payload...)) {
		n.stats.dropped.Add(1)
		return false
	}
	return true
}

// linkLocked returns the link for p, starting its goroutine the first
// time; mu is held.
func (n *Network) linkLocked(p pair, dst *node) *link {
	if l := n.links[p]; l != nil && l.dst == dst {
		return l
	} else if l != nil {
		l.stop() // the receiver was replaced: the old link's queue is lost
	}
	l := newLink(n, p, dst)
	n.links[p] = l
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		l.run()
	}()
	return l
}

// OpenStream asks to's ServeSnapshot for req and returns what it writes,
// through a pipe. The stream breaks with ErrUnreachable if the link is
// cut while it runs, and ends when ctx does.
func (e *Endpoint) OpenStream(ctx context.Context, to string, req []byte) (io.ReadCloser, error) {
	n := e.net
	p := pair{e.name, to}
	n.mu.Lock()
	defer n.mu.Unlock()
	switch dst, ok := n.nodes[to]; {
	case n.ctx.Err() != nil:
		return nil, ErrClosed
	case !ok:
		return nil, fmt.Errorf("%w: %s", ErrUnknownPeer, to)
	case !n.reachableLocked(e.name, to) || !n.reachableLocked(to, e.name):
		n.stats.streamsRefused.Add(1)
		return nil, fmt.Errorf("%w: %s to %s", ErrUnreachable, e.name, to)
	default:
		n.stats.streams.Add(1)
		return n.startStreamLocked(ctx, p, dst.h, append([]byte(nil), req...)), nil
	}
}

// startStreamLocked runs the server side of a stream on a goroutine of
// its own, writing into a pipe the caller reads; mu is held.
func (n *Network) startStreamLocked(ctx context.Context, p pair, h Handler, req []byte) io.ReadCloser {
	pr, pw := io.Pipe()
	if n.streams[p] == nil {
		n.streams[p] = map[*io.PipeWriter]struct{}{}
	}
	n.streams[p][pw] = struct{}{}
	sctx, cancel := context.WithCancel(n.ctx)
	stopCtx := context.AfterFunc(ctx, func() { _ = pw.CloseWithError(ctx.Err()) })
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer cancel()
		defer stopCtx()
		err := h.ServeSnapshot(sctx, p.from, req, pw)
		_ = pw.CloseWithError(err) // nil: the reader sees io.EOF; a break's error stays
		n.mu.Lock()
		delete(n.streams[p], pw)
		n.mu.Unlock()
	}()
	return pr
}

// breakStreamsLocked fails every open stream of p with err, for the
// reader and for the server's next write; mu is held.
func (n *Network) breakStreamsLocked(p pair, err error) {
	for pw := range n.streams[p] {
		_ = pw.CloseWithError(err)
	}
}
