package replica

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/lockstep/lockstep/protocol/chain"
)

// handleReady carries out the core's effects until it has none left:
// entries from the predecessor are applied (then reported Applied, which
// lets the core forward them and ack), messages are sent, and the commit
// point is published to waiting writers.
func (r *Replica) handleReady(ctx context.Context) {
	for range 64 {
		r.mu.Lock()
		rd := r.core.Ready()
		if n := len(rd.Apply); n > 0 {
			if err := r.applyLocked(rd.Apply); err != nil {
				r.mu.Unlock()
				r.fail(err)
				return
			}
			r.core.Applied(rd.Apply[n-1].Seq)
		}
		r.mu.Unlock()
		r.sendAll(rd.Messages)
		if rd.Commit > 0 {
			r.commit.advance(rd.Commit)
		}
		if rd.NeedSnapshot != "" {
			r.startFetch(ctx, rd.NeedSnapshot)
		}
		if len(rd.Apply) == 0 && len(rd.Messages) == 0 {
			return
		}
	}
	r.kickLoop() // more work remains; come back after other events
}

func (r *Replica) applyLocked(entries []chain.Entry) error {
	var scratch []byte
	for _, e := range entries {
		var err error
		if scratch, err = r.sm.Apply(e.Seq, e.Data, scratch[:0]); err != nil {
			return err
		}
	}
	r.stats.applied.Add(uint64(len(entries)))
	return nil
}

func (r *Replica) sendAll(msgs []chain.Message) {
	for _, m := range msgs {
		if !r.send.Send(m.To, chain.AppendMessage(nil, m)) {
			r.stats.dropped.Add(1)
		}
	}
}

// commitPoint publishes the highest committed sequence number to writers
// waiting for their replies, and wakes them on any change of role too.
type commitPoint struct {
	seq atomic.Uint64
	mu  sync.Mutex
	ch  chan struct{}
	err error
}

func (c *commitPoint) init() { c.ch = make(chan struct{}) }

func (c *commitPoint) advance(seq uint64) {
	if seq <= c.seq.Load() {
		return
	}
	c.seq.Store(seq)
	c.wake()
}

// wake releases every waiter so it re-checks its condition.
func (c *commitPoint) wake() {
	c.mu.Lock()
	close(c.ch)
	c.ch = make(chan struct{})
	c.mu.Unlock()
}

func (c *commitPoint) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	c.wake()
}

// changed returns a channel closed at the next change, and the sticky error.
func (c *commitPoint) changed() (<-chan struct{}, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ch, c.err
}

// env is the Env handed to Prepare on the head; only touched under mu.
type env struct {
	nowMillis int64
	rnd       *rand.Rand
}

func newEnv() env { return env{rnd: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))} }

func (e *env) NowMillis() int64 { return e.nowMillis }
func (e *env) Rand() uint64     { return e.rnd.Uint64() }

// stats are counters for INFO and status.
type stats struct {
	applied   atomic.Uint64
	dropped   atomic.Uint64
	forwarded atomic.Uint64
	snapshots atomic.Uint64
}
