package memnet

import "sync"

// link is one directed link: a bounded queue and the goroutine that
// delivers it. The goroutine takes everything queued at once and hands
// it over as one burst, which is what a TCP reader does with the frames
// one read returned: Deliver for each, then BurstDone.
type link struct {
	net *Network
	p   pair
	dst *node

	mu      sync.Mutex
	queue   [][]byte
	stopped bool
	ready   chan struct{} // holds a token while the queue is not empty
	done    chan struct{} // closed by stop
}

func newLink(n *Network, p pair, dst *node) *link {
	return &link{net: n, p: p, dst: dst, ready: make(chan struct{}, 1), done: make(chan struct{})}
}

// push queues msg and reports false if the queue is full or the link
// stopped.
func (l *link) push(msg []byte) bool {
	l.mu.Lock()
	if l.stopped || len(l.queue) >= l.net.queue {
		l.mu.Unlock()
		return false
	}
	l.queue = append(l.queue, msg)
	l.mu.Unlock()
	select {
	case l.ready <- struct{}{}:
	default:
	}
	return true
}

// stop ends the link's goroutine after its current burst; what is still
// queued is dropped.
func (l *link) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.stopped = true
		close(l.done)
	}
}

// run delivers bursts until stop.
func (l *link) run() {
	for {
		select {
		case <-l.done:
			l.dropQueued()
			return
		case <-l.ready:
		}
		l.mu.Lock()
		burst := l.queue
		l.queue = nil
		l.mu.Unlock()
		l.deliver(burst)
	}
}

// deliver hands one burst to the receiver. A link cut while the burst
// was queued loses it, as a broken connection loses what it had in flight.
func (l *link) deliver(burst [][]byte) {
	if !l.net.reachable(l.p.from, l.p.to) {
		l.net.stats.dropped.Add(uint64(len(burst)))
		return
	}
	for _, m := range burst {
		l.dst.h.Deliver(l.p.from, m)
	}
	l.net.stats.delivered.Add(uint64(len(burst)))
	l.dst.h.BurstDone(l.p.from)
}

func (l *link) dropQueued() {
	l.mu.Lock()
	n := len(l.queue)
	l.queue = nil
	l.mu.Unlock()
	l.net.stats.dropped.Add(uint64(n))
}
