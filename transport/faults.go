package transport

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Faults makes a Transport an unreliable network for tests and chaos runs.
//
// Faults apply to outbound messages only (Send), one decision per message;
// snapshot streams are not affected. A message is either dropped, as if lost
// on the wire, or held back before it is written. Delays never reorder the
// messages to one peer: a message is held until its own delay has passed and
// every earlier message to that peer has been written, as on a TCP stream.
//
// The decisions come from one random source seeded by Seed, so a single
// goroutine sending the same messages makes the same decisions on a replay;
// concurrent Sends draw from it in whatever order they take its lock.
type Faults struct {
	DropRate float64       // probability each outbound message is silently dropped (0..1)
	Delay    time.Duration // every outbound message is held at least this long before it is written
	Jitter   time.Duration // plus a uniform random extra delay in [0, Jitter)
	Seed     uint64        // seeds the random source; 0 picks one and it is logged
}

// validate reports a Faults that cannot be applied.
func (f *Faults) validate() error {
	switch {
	case !(f.DropRate >= 0 && f.DropRate <= 1): // also refuses NaN
		return fmt.Errorf("%w: Faults.DropRate %v outside [0, 1]", ErrInvalidConfig, f.DropRate)
	case f.Delay < 0 || f.Jitter < 0:
		return fmt.Errorf("%w: negative Faults.Delay or Faults.Jitter", ErrInvalidConfig)
	}
	return nil
}

// faultInjector draws the per-message fault decisions. The Transport holds
// nil when Config.Faults is nil, so a perfect network pays one nil check.
type faultInjector struct {
	cfg     Faults // Seed is the seed in use, never 0
	delayed bool   // messages go through the peers' delay lines

	mu  sync.Mutex
	rng *rand.Rand
}

// newFaultInjector copies f, picking a seed if it has none.
func newFaultInjector(f *Faults) *faultInjector {
	cfg := *f
	for cfg.Seed == 0 {
		cfg.Seed = rand.Uint64()
	}
	return &faultInjector{
		cfg:     cfg,
		delayed: cfg.Delay > 0 || cfg.Jitter > 0,
		rng:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed)),
	}
}

// decide returns whether to drop the next message and, if it is kept and
// delays are on, the earliest time it may be written; the zero time means
// at once.
func (f *faultInjector) decide() (drop bool, due time.Time) {
	f.mu.Lock()
	drop = f.cfg.DropRate > 0 && f.rng.Float64() < f.cfg.DropRate
	var extra time.Duration
	if !drop && f.cfg.Jitter > 0 {
		extra = time.Duration(f.rng.Int64N(int64(f.cfg.Jitter)))
	}
	f.mu.Unlock()
	if drop || !f.delayed {
		return drop, time.Time{}
	}
	return false, time.Now().Add(f.cfg.Delay + extra)
}

// logFaults announces the faults in force, with the seed that replays them.
func (t *Transport) logFaults() {
	if t.faults == nil {
		return
	}
	c := t.faults.cfg
	t.log.Info("transport: fault injection on",
		"drop_rate", c.DropRate, "delay", c.Delay, "jitter", c.Jitter, "seed", c.Seed)
}

// sendFaulty is Send for a Transport with faults: it drops the message or
// queues it, held back, on the peer's delay line.
func (t *Transport) sendFaulty(to string, payload []byte) bool {
	drop, due := t.faults.decide()
	if drop {
		t.stats.msgsFaultDropped.Add(1)
		return true
	}
	for {
		p := t.peer(to)
		if p == nil {
			return false
		}
		var ok, gone bool
		if due.IsZero() {
			ok, gone = p.enqueue(payload)
		} else {
			ok, gone = p.enqueueDelayed(payload, due)
		}
		if gone {
			continue
		}
		if !ok {
			t.stats.msgsDropped.Add(1)
		}
		return ok
	}
}

// delayedMsg is a message waiting on a peer's delay line.
type delayedMsg struct {
	due     time.Time
	payload []byte // a copy; the caller of Send may reuse its own
}

// delayLine holds a peer's held-back messages in Send order, with due times
// that never decrease, so the head is always the next to become due. Like
// the write queue it counts against QueueBytes and is discarded by Drop and
// Close; unlike it, a connection failure leaves it alone, since those
// messages are later than anything the failure lost, and order holds. The
// peer's mutex guards it.
type delayLine struct {
	msgs    []delayedMsg
	bytes   int       // framed size of msgs, counted against QueueBytes
	lastDue time.Time // due time of the latest message queued
}

// enqueueDelayed appends payload to the delay line, due no earlier than due
// nor than the message before it, and wakes the writer so that it sets its
// timer. Results are as for enqueue.
func (p *peer) enqueueDelayed(payload []byte, due time.Time) (ok, gone bool) {
	n := messageFrameLen(len(payload))
	p.mu.Lock()
	if p.gone {
		p.mu.Unlock()
		return false, true
	}
	d := &p.delay
	if p.q.bytes+p.inflight+d.bytes+n > p.t.cfg.QueueBytes {
		p.mu.Unlock()
		return false, false
	}
	due = later(due, d.lastDue)
	d.lastDue = due
	wasEmpty := len(d.msgs) == 0
	d.msgs = append(d.msgs, delayedMsg{due: due, payload: bytes.Clone(payload)})
	d.bytes += n
	p.mu.Unlock()
	if wasEmpty {
		p.wake()
	}
	return true, false
}

func later(a, b time.Time) time.Time {
	if a.Before(b) {
		return b
	}
	return a
}

// promoteDue moves the messages that are due from the delay line to the
// write queue, in order. Only the writer calls it, before it takes the queue.
func (p *peer) promoteDue() {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := &p.delay
	if len(d.msgs) == 0 {
		return
	}
	now := time.Now()
	k := 0
	for k < len(d.msgs) && !d.msgs[k].due.After(now) {
		p.q.push(d.msgs[k].payload)
		d.bytes -= messageFrameLen(len(d.msgs[k].payload))
		k++
	}
	if k > 0 {
		rest := copy(d.msgs, d.msgs[k:])
		clear(d.msgs[rest:])
		d.msgs = d.msgs[:rest]
	}
}

// discardDelayed drops the delay line and returns how many messages it held.
// The caller holds p.mu.
func (p *peer) discardDelayed() int {
	lost := len(p.delay.msgs)
	p.delay = delayLine{}
	return lost
}

// armDue sets the writer's due timer for the head of the delay line, unless
// it is set already or the line is empty. Only the writer calls it.
func (p *peer) armDue() {
	if p.t.faults == nil || p.dueArmed {
		return
	}
	p.mu.Lock()
	var head time.Time
	if len(p.delay.msgs) > 0 {
		head = p.delay.msgs[0].due
	}
	p.mu.Unlock()
	if head.IsZero() {
		return
	}
	wait := time.Until(head)
	if p.dueTimer == nil {
		p.dueTimer = time.NewTimer(wait)
	} else {
		p.dueTimer.Reset(wait)
	}
	p.dueArmed = true
}

// dueC is the due timer's channel while it is armed, else nil.
func (p *peer) dueC() <-chan time.Time {
	if !p.dueArmed {
		return nil
	}
	return p.dueTimer.C
}
