package transport

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// peer is the outbound message link to one peer: a queue of framed messages
// and the writer goroutine (run) that dials the peer and drains the queue,
// writing everything queued since its last write in one system call.
type peer struct {
	t      *Transport
	name   string
	ctx    context.Context // cancelled by stop
	cancel context.CancelFunc
	kick   chan struct{} // capacity 1; signalled when the queue becomes non-empty

	mu       sync.Mutex
	q        frameQueue
	inflight int // bytes of the batch being written
	gone     bool
	conn     net.Conn // written under mu by the writer only

	// Owned by the writer goroutine.
	spare    [][]byte      // block list to give the queue at the next take
	iov      net.Buffers   // the batch for writev, keeping its capacity
	iovLeft  net.Buffers   // what writev consumes (a field, so it does not escape)
	dead     chan struct{} // closed when the peer closes conn; nil if no conn
	backoff  time.Duration
	retryAt  time.Time
	failures int         // consecutive failed connects or writes
	trim     *time.Timer // lets go of spare blocks once the link has idled
	trimming bool        // trim is armed
	dueTimer *time.Timer // wakes the writer when the delay line's head is due
	dueArmed bool        // dueTimer is armed

	delay delayLine // messages held back by Config.Faults; guarded by mu
}

// trimDelay is how long a link keeps the blocks of a burst once its queue has
// emptied. Trimming at once would make a link that keeps its queue full, and
// so empties it often, allocate its blocks afresh after each emptying.
const trimDelay = time.Second

// Send queues payload for the peer named to and returns at once: it never
// waits for the network. It copies payload, so the caller may reuse it.
//
// Send returns false, dropping the message, when the Transport is closed,
// when payload is longer than MaxFrame, or when the bytes queued for the peer
// would exceed QueueBytes. True means only that the message was queued: a
// connect or write error discards everything queued for the peer, and the
// next Send dials again after a backoff. The protocols above retransmit.
// Config.Faults may drop the message (Send still returns true) or hold it
// back before it is queued for writing.
//
// The first Send to a peer starts its writer goroutine, which lives until
// Drop or Close. Safe for concurrent use; messages to one peer are written in
// the order their Sends took the peer's queue lock.
func (t *Transport) Send(to string, payload []byte) bool {
	if len(payload) > t.cfg.MaxFrame {
		t.stats.msgsDropped.Add(1)
		return false
	}
	if t.faults != nil {
		return t.sendFaulty(to, payload)
	}
	for {
		p := t.peer(to)
		if p == nil {
			return false
		}
		ok, gone := p.enqueue(payload)
		if gone {
			continue // Dropped meanwhile: the next lookup makes a new link.
		}
		if !ok {
			t.stats.msgsDropped.Add(1)
		}
		return ok
	}
}

// peer returns the link to name, creating it and starting its writer on first
// use. It returns nil once the Transport is closed.
func (t *Transport) peer(name string) *peer {
	if p, ok := t.peers.Load(name); ok {
		return p.(*peer)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	if p, ok := t.peers.Load(name); ok {
		return p.(*peer)
	}
	ctx, cancel := context.WithCancel(t.ctx)
	p := &peer{t: t, name: name, ctx: ctx, cancel: cancel, kick: make(chan struct{}, 1)}
	t.peers.Store(name, p)
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		p.run()
	}()
	return p
}

// enqueue appends payload's frame to the queue. gone reports that the link
// was stopped and the caller should look it up again.
func (p *peer) enqueue(payload []byte) (ok, gone bool) {
	n := messageFrameLen(len(payload))
	p.mu.Lock()
	if p.gone {
		p.mu.Unlock()
		return false, true
	}
	if p.q.bytes+p.inflight+n > p.t.cfg.QueueBytes {
		p.mu.Unlock()
		return false, false
	}
	wasEmpty := p.q.bytes == 0
	p.q.push(payload)
	p.mu.Unlock()
	// Only the empty to non-empty transition needs a wake-up: a writer that
	// is busy re-checks the queue before it waits again.
	if wasEmpty {
		p.wake()
	}
	return true, false
}

// wake signals the writer, unless a signal is pending already.
func (p *peer) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// stop ends the link: it discards the queue, cancels the writer and closes
// the connection to unblock a write in progress.
func (p *peer) stop() {
	p.mu.Lock()
	p.gone = true
	conn := p.conn
	lost := p.q.discard() + p.discardDelayed()
	p.q = frameQueue{}
	p.mu.Unlock()
	p.cancel()
	if conn != nil {
		conn.Close()
	}
	p.t.stats.msgsDropped.Add(uint64(lost))
}

// run is the writer goroutine.
func (p *peer) run() {
	defer p.disconnect()
	defer func() {
		if p.trim != nil {
			p.trim.Stop()
		}
		if p.dueTimer != nil {
			p.dueTimer.Stop()
		}
	}()
	for {
		p.armDue()
		select {
		case <-p.ctx.Done():
			return
		case <-p.trimC():
			p.trimming = false
			p.mu.Lock()
			p.q.trim(idleBlocks)
			p.mu.Unlock()
			continue
		case <-p.dead:
			// The peer closed the idle connection (it restarted, left or
			// refused a frame): forget it so that the next batch dials
			// afresh instead of being lost on a dead socket.
			p.disconnect()
			continue
		case <-p.dueC():
			p.dueArmed = false
		case <-p.kick:
		}
		if !p.flush() {
			return
		}
	}
}

// flush writes batches until the queue is empty. It returns false when the
// link has been stopped.
func (p *peer) flush() bool {
	for {
		if p.t.faults != nil {
			p.promoteDue()
		}
		// Connect before taking the queue, so that everything queued while
		// dialling leaves in the first write. With nothing pending there is
		// nothing to take either: a message queued from now on finds the
		// queue empty and kicks the writer again, whereas taking it here
		// would write it to no connection.
		if !p.live() {
			if !p.hasPending() {
				p.scheduleTrim()
				return true
			}
			if err := p.connect(); err != nil {
				if p.ctx.Err() != nil {
					return false
				}
				p.fail(err, 0)
				return true
			}
		}
		batch, bytes, msgs := p.take()
		if len(batch) == 0 {
			p.scheduleTrim()
			return true
		}
		err := p.write(batch)
		p.release(batch)
		if p.ctx.Err() != nil {
			return false
		}
		if err != nil {
			p.fail(err, msgs)
			return true
		}
		s := &p.t.stats
		s.msgsSent.Add(uint64(msgs))
		s.bytesSent.Add(uint64(bytes))
		s.writes.Add(1)
	}
}

func (p *peer) hasPending() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.q.bytes > 0
}

// take swaps the queue's blocks out for writing.
func (p *peer) take() (batch [][]byte, bytes, msgs int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.q.bytes == 0 {
		return nil, 0, 0
	}
	batch, bytes, msgs = p.q.take(p.spare)
	p.inflight = bytes
	p.spare = nil
	return batch, bytes, msgs
}

// scheduleTrim arms the trim timer if the idle link holds more free blocks
// than it keeps.
func (p *peer) scheduleTrim() {
	if p.trimming {
		return
	}
	p.mu.Lock()
	excess := len(p.q.free) > idleBlocks
	p.mu.Unlock()
	if !excess {
		return
	}
	if p.trim == nil {
		p.trim = time.NewTimer(trimDelay)
	} else {
		p.trim.Reset(trimDelay)
	}
	p.trimming = true
}

// trimC is the trim timer's channel while it is armed, else nil.
func (p *peer) trimC() <-chan time.Time {
	if !p.trimming {
		return nil
	}
	return p.trim.C
}

// release returns a written (or failed) batch's blocks and bytes to the queue.
func (p *peer) release(batch [][]byte) {
	p.mu.Lock()
	p.inflight = 0
	if !p.gone {
		p.q.recycle(batch)
	}
	p.mu.Unlock()
	p.spare = batch[:0]
}

func (p *peer) write(batch [][]byte) error {
	if err := p.conn.SetWriteDeadline(time.Now().Add(p.t.cfg.WriteTimeout)); err != nil {
		return err
	}
	if len(batch) == 1 {
		_, err := p.conn.Write(batch[0])
		return err
	}
	p.iov = append(p.iov[:0], batch...)
	p.iovLeft = p.iov
	_, err := p.iovLeft.WriteTo(p.conn)
	return err
}

// live reports whether the writer holds a connection the peer has not
// closed, forgetting one it has.
func (p *peer) live() bool {
	if p.conn == nil {
		return false
	}
	select {
	case <-p.dead:
		p.disconnect()
		return false
	default:
		return true
	}
}

// connect dials the peer, after waiting out the backoff of earlier failures.
func (p *peer) connect() error {
	if wait := time.Until(p.retryAt); wait > 0 && !sleepCtx(p.ctx, wait) {
		return p.ctx.Err()
	}
	conn, _, err := p.t.dial(p.ctx, p.name, kindMessages)
	if err != nil {
		return err
	}
	p.mu.Lock()
	if p.gone {
		p.mu.Unlock()
		p.t.release(conn)
		return ErrClosed
	}
	p.conn = conn
	p.mu.Unlock()
	dead := make(chan struct{})
	if !p.t.goroutine(func() { watchClose(conn, dead) }) {
		return ErrClosed // run's deferred disconnect releases conn
	}
	p.dead = dead
	if p.failures > 0 {
		p.t.log.Info("transport: reconnected to peer", "peer", p.name, "failures", p.failures)
	}
	p.failures, p.backoff = 0, 0
	p.t.stats.connects.Add(1)
	return nil
}

// watchClose returns when the acceptor closes conn. The acceptor never sends
// after its handshake reply, so any return from Read means the link is gone.
func watchClose(conn net.Conn, dead chan struct{}) {
	var b [1]byte
	_, _ = conn.Read(b[:])
	close(dead)
}

// disconnect forgets and closes the writer's connection.
func (p *peer) disconnect() {
	p.mu.Lock()
	conn := p.conn
	p.conn = nil
	p.mu.Unlock()
	if conn != nil {
		p.t.release(conn)
	}
	p.dead = nil
}

// fail handles a failed connect or write: it drops the batch in hand (lost
// messages) and everything queued, closes the connection and backs off.
func (p *peer) fail(err error, lost int) {
	p.mu.Lock()
	lost += p.q.discard()
	p.mu.Unlock()
	p.disconnect()
	p.t.stats.msgsDropped.Add(uint64(lost))
	p.backoff = min(max(2*p.backoff, minBackoff), maxBackoff)
	p.retryAt = time.Now().Add(p.backoff)
	p.failures++
	// The first failure of a streak is worth a warning; repeats of it, at
	// up to a few a second, are not. A foreign cluster is a
	// misconfiguration and always an error.
	level := slog.LevelDebug
	switch {
	case errors.Is(err, ErrWrongCluster):
		level = slog.LevelError
	case p.failures == 1:
		level = slog.LevelWarn
	}
	p.t.log.Log(context.Background(), level, "transport: link to peer failed, queued messages dropped",
		"peer", p.name, "err", err, "dropped", lost, "retry_in", p.backoff)
}
