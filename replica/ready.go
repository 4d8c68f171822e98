package replica

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstep/lockstep/protocol"
)

// handleReady carries out the core's effects until it has none left:
// entries are applied (then reported Applied, which lets the core forward
// them and ack), an epoch is closed when the core asks, messages are sent,
// and the commit point is published to waiting writers.
func (r *Replica) handleReady(ctx context.Context) {
	r.readyMu.Lock()
	defer r.readyMu.Unlock()
	if r.retiring.Load() {
		return
	}
	for range 64 {
		r.mu.Lock()
		rd, err := r.readyLocked()
		var closed protocol.Ready
		if err == nil && rd.TakeDelta {
			closed, err = r.closeEpochLocked()
		}
		r.mu.Unlock()
		if err != nil {
			r.fail(err) // takes no lock of ours
			return
		}
		r.carryOut(ctx, rd)
		r.carryOut(ctx, closed)
		if len(rd.Apply) == 0 && outboxLen(rd.Messages) == 0 && !rd.TakeDelta {
			return
		}
	}
	r.kickLoop() // more work remains; come back after other events
}

// readyLocked takes the core's effects and applies their entries, under
// mu. A state machine that tracks speculative changes learns the commit
// point here, before a read can be gated on it.
func (r *Replica) readyLocked() (protocol.Ready, error) {
	rd := r.core.Ready()
	if n := len(rd.Apply); n > 0 {
		if err := r.applyLocked(rd.Apply); err != nil {
			return rd, err
		}
		r.core.Applied(rd.Apply[n-1].Seq)
	}
	if rd.Commit > 0 && r.speculative {
		r.sm.Committed(rd.Commit)
	}
	return rd, nil
}

// closeEpochLocked closes the open epoch the core asked to close: it takes
// the delta of what the state machine changed (which the machine then
// forgets, so the core, having asked under this lock, must accept it) and
// hands it to the core with the seq it ends at. The core's effects of the
// close (the checkpoint's messages, and a new primary's empty checkpoint
// to apply) are taken at once, under the same lock, so that no write is
// executed before that checkpoint's seq is applied.
func (r *Replica) closeEpochLocked() (protocol.Ready, error) {
	r.flushHeadAppliedLocked()
	delta, err := r.sm.TakeDelta()
	if err != nil {
		return protocol.Ready{}, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	if err := r.core.CloseEpoch(r.sm.AppliedSeq(), delta); err != nil {
		return protocol.Ready{}, err
	}
	return r.readyLocked()
}

// carryOut does what is left of rd once the lock is released: it sends
// the messages, publishes the commit point and starts a snapshot fetch.
//
// A replica that has failed does none of it, whatever its store says now:
// its store may have lost writes it applied, and a sync that works again
// after one that failed does not bring them back.
//
// A commit point that is durable here already is published before the
// sync the messages need: a replica that orders writes has synced every
// entry it sent, and the commit point never passes what its peers
// acknowledged of them, so the replies it releases need not wait for an
// fsync of the writes proposed since (which the next round commits).
func (r *Replica) carryOut(ctx context.Context, rd protocol.Ready) {
	if r.Err() != nil {
		return
	}
	commit := rd.Commit
	if commit > 0 && (!r.opts.SyncBeforeSend || commit <= r.synced.Load()) {
		r.commit.advance(commit)
		commit = 0
	}
	if r.opts.SyncBeforeSend && (outboxLen(rd.Messages) > 0 || commit > 0) {
		if err := r.syncStore(); err != nil {
			return
		}
	}
	r.sendAll(rd.Messages)
	if commit > 0 {
		r.commit.advance(commit)
	}
	if rd.NeedSnapshot != "" {
		r.startFetch(ctx, rd.NeedSnapshot)
	}
}

// syncStore makes every batch applied so far durable and records how far
// that reached (synced); a failed sync fails the replica.
func (r *Replica) syncStore() error {
	seq := r.store.AppliedSeq()
	start := r.opts.Now()
	if err := r.store.Sync(); err != nil {
		return r.fail(fmt.Errorf("%w: %w", ErrStorage, err))
	}
	r.hist.sync.Observe(r.opts.Now().Sub(start).Seconds())
	for {
		old := r.synced.Load()
		if seq <= old || r.synced.CompareAndSwap(old, seq) {
			return nil
		}
	}
}

func (r *Replica) applyLocked(entries []protocol.Entry) error {
	var scratch []byte
	for _, e := range entries {
		var err error
		if scratch, err = r.sm.Apply(e.Seq, e.Data, scratch[:0]); err != nil {
			return fmt.Errorf("%w: %w", ErrStorage, err)
		}
	}
	r.stats.applied.Add(uint64(len(entries)))
	return nil
}

// sendAll encodes each message into one reused buffer (Send copies it)
// and hands it to the transport. It runs under readyMu, which guards buf.
func (r *Replica) sendAll(msgs protocol.Outbox) {
	for i := range outboxLen(msgs) {
		var to string
		to, r.sendBuf = msgs.Encode(i, r.sendBuf[:0])
		if !r.send.Send(to, r.sendBuf) {
			r.stats.dropped.Add(1)
		}
	}
	if cap(r.sendBuf) > 1<<20 {
		r.sendBuf = nil
	}
}

// outboxLen is the number of messages in o, which is nil for none.
func outboxLen(o protocol.Outbox) int {
	if o == nil {
		return 0
	}
	return o.Len()
}

// commitPoint publishes the highest committed sequence number to the
// writers waiting for their replies. Waiters are kept in sequence order so
// an advance wakes exactly the writers it commits, not every writer; a
// change of role or a failure wakes everyone to re-check.
//
// A waiter is a channel (Wait, on the writer's goroutine) or a callback
// (OnCommit, run by whoever advances the commit point, so the connection's
// goroutine need not park twice per write). Callbacks run after mu is
// released and get the outcome: nil, a timeout, or the replica's failure.
//
// A waiter's deadline is enforced by expire, which the run loop calls every
// tick, rather than by a timer per write: arming and stopping a timer for
// every write cost the head more than the select that waits.
type commitPoint struct {
	seq atomic.Uint64
	// waited, if set, observes how long each released writer waited: its
	// deadline less timeout (when it registered) to the advance, on now.
	waited  prometheus.Observer
	timeout time.Duration
	now     func() time.Time
	mu      sync.Mutex
	waiters []waiter      // sorted by seq
	soonest time.Time     // no waiter's deadline is earlier (zero: none)
	changed chan struct{} // closed on a change of role or on failure
	err     error
}

type waiter struct {
	seq      uint64
	deadline time.Time
	ch       chan struct{} // closed at commit or expiry, or
	fn       func(error)   // called with the outcome
}

// callbacks collects the outcomes to report once mu is released.
type callbacks []func(error)

func (cb callbacks) run(err error) {
	for _, f := range cb {
		f(err)
	}
}

func (c *commitPoint) init() { c.changed = make(chan struct{}) }

// advance publishes seq and releases the waiters it covers.
func (c *commitPoint) advance(seq uint64) {
	if seq <= c.seq.Load() {
		return
	}
	var buf [32]func(error) // an advance usually releases a batch's writers: no allocation
	fns := callbacks(buf[:0])
	c.mu.Lock()
	c.seq.Store(seq)
	var now time.Time
	if c.waited != nil && len(c.waiters) > 0 && c.waiters[0].seq <= seq {
		now = c.now()
	}
	n := 0
	for n < len(c.waiters) && c.waiters[n].seq <= seq {
		if c.waited != nil {
			c.waited.Observe(now.Sub(c.waiters[n].deadline.Add(-c.timeout)).Seconds())
		}
		if w := c.waiters[n]; w.fn != nil {
			fns = append(fns, w.fn)
		} else {
			close(w.ch)
		}
		n++
	}
	c.waiters = append(c.waiters[:0], c.waiters[n:]...)
	c.mu.Unlock()
	fns.run(nil)
}

// wait registers for seq until deadline. done is closed when seq commits
// or, at the first expire after it, when the deadline has passed (the
// caller tells the two apart by the commit point); changed is closed when
// the role changes or the replica fails (then err may be set).
func (c *commitPoint) wait(seq uint64, deadline time.Time) (done, changed <-chan struct{}, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seq.Load() >= seq {
		return closedChan, c.changed, nil
	}
	if c.err != nil {
		return nil, c.changed, c.err
	}
	ch := make(chan struct{})
	c.insert(waiter{seq: seq, deadline: deadline, ch: ch})
	return ch, c.changed, nil
}

// onCommit registers fn for seq until deadline and reports true, or
// reports false, without calling fn, if seq has committed. After a
// failure fn is called at once with the failure.
func (c *commitPoint) onCommit(seq uint64, deadline time.Time, fn func(error)) bool {
	c.mu.Lock()
	if c.seq.Load() >= seq {
		c.mu.Unlock()
		return false
	}
	if err := c.err; err != nil {
		c.mu.Unlock()
		fn(err)
		return true
	}
	c.insert(waiter{seq: seq, deadline: deadline, fn: fn})
	c.mu.Unlock()
	return true
}

// insert adds w in seq order; mu is held.
func (c *commitPoint) insert(w waiter) {
	i := len(c.waiters) // writers mostly arrive in seq order
	if i > 0 && c.waiters[i-1].seq > w.seq {
		i = sort.Search(len(c.waiters), func(i int) bool { return c.waiters[i].seq > w.seq })
	}
	c.waiters = append(c.waiters, waiter{})
	copy(c.waiters[i+1:], c.waiters[i:])
	c.waiters[i] = w
	if c.soonest.IsZero() || w.deadline.Before(c.soonest) {
		c.soonest = w.deadline
	}
}

// expire releases the waiters whose deadline is before now; callbacks get
// timeout. It looks at the waiters only when one may have expired.
func (c *commitPoint) expire(now time.Time, timeout error) {
	c.mu.Lock()
	due := !c.soonest.IsZero() && c.soonest.Before(now)
	c.mu.Unlock()
	if due {
		c.drop(func(w waiter) bool { return w.deadline.Before(now) }, timeout)
	}
}

// abandon fails every callback waiter with err: the replica stopped
// ordering writes, so nothing it waits for can commit here. (Channel
// waiters re-check for themselves when woken.)
func (c *commitPoint) abandon(err error) {
	c.drop(func(w waiter) bool { return w.fn != nil }, err)
}

// drop removes the waiters that match and releases them, callbacks with
// err once mu is released.
func (c *commitPoint) drop(match func(waiter) bool, err error) {
	var fns callbacks
	c.mu.Lock()
	kept := c.waiters[:0]
	c.soonest = time.Time{}
	for _, w := range c.waiters {
		switch {
		case !match(w):
			kept = append(kept, w)
			if c.soonest.IsZero() || w.deadline.Before(c.soonest) {
				c.soonest = w.deadline
			}
		case w.fn != nil:
			fns = append(fns, w.fn)
		default:
			close(w.ch)
		}
	}
	clear(c.waiters[len(kept):])
	c.waiters = kept
	c.mu.Unlock()
	fns.run(err)
}

var closedChan = func() chan struct{} { ch := make(chan struct{}); close(ch); return ch }()

// wake tells every waiter to re-check its role.
func (c *commitPoint) wake() {
	c.mu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// windowChanged returns a channel closed at the next advance or change, or
// once deadline has passed, for writers waiting for room in the
// replication window.
func (c *commitPoint) windowChanged(deadline time.Time) <-chan struct{} {
	done, changed, _ := c.wait(c.seq.Load()+1, deadline)
	return anyOf(done, changed)
}

func anyOf(a, b <-chan struct{}) <-chan struct{} {
	out := make(chan struct{})
	go func() {
		select {
		case <-a:
		case <-b:
		}
		close(out)
	}()
	return out
}

func (c *commitPoint) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	err = c.err
	c.mu.Unlock()
	c.abandon(err)
	c.wake()
}

// env is the Env handed to Prepare on the head; only touched under mu.
type env struct {
	nowMillis int64
	rnd       *rand.Rand
}

func newEnv(rnd *rand.Rand) env {
	if rnd == nil {
		rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return env{rnd: rnd}
}

func (e *env) NowMillis() int64 { return e.nowMillis }
func (e *env) Rand() uint64     { return e.rnd.Uint64() }

// stats are counters for INFO and status.
type stats struct {
	applied   atomic.Uint64
	dropped   atomic.Uint64
	forwarded atomic.Uint64
	snapshots atomic.Uint64 // served
	// installed counts snapshots this replica installed (full copies of
	// a peer's state), and installedBytes their size: a restart that
	// costs a full copy shows here.
	installed      atomic.Uint64
	installedBytes atomic.Uint64
	// configs counts the configurations installed: every failover, join,
	// promotion and removal the group went through while this replica
	// ran.
	configs atomic.Uint64
}
