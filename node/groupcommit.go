package node

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/lockstep/lockstep/storage"
)

// groupCommit makes writes durable in batches: the first waiter to find no
// flush running becomes the leader, flushes everything applied so far with
// one Sync, and wakes every waiter the flush covered. Writers that arrive
// during a flush wait for the next one, which then covers all of them, so
// the number of fsyncs grows with time, not with the number of writers.
type groupCommit struct {
	store storage.Store

	durable atomic.Uint64 // highest sequence known to be on disk
	latest  atomic.Uint64 // highest sequence applied

	mu      sync.Mutex
	syncing bool
	done    chan struct{} // closed when the running flush ends
	err     error         // sticky: a failed flush fails every later wait
}

func newGroupCommit(store storage.Store, applied uint64) *groupCommit {
	g := &groupCommit{store: store, done: make(chan struct{})}
	g.durable.Store(applied)
	g.latest.Store(applied)
	return g
}

// applied records that seq has been applied (not yet flushed).
func (g *groupCommit) applied(seq uint64) { g.latest.Store(seq) }

func (g *groupCommit) isDurable(seq uint64) bool { return g.durable.Load() >= seq }

// wait returns once seq is durable, leading a flush if none is running.
func (g *groupCommit) wait(ctx context.Context, seq uint64) error {
	for {
		g.mu.Lock()
		if g.err != nil {
			g.mu.Unlock()
			return g.err
		}
		if g.durable.Load() >= seq {
			g.mu.Unlock()
			return nil
		}
		if !g.syncing {
			g.syncing = true
			g.mu.Unlock()
			g.flush()
			continue
		}
		done := g.done
		g.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// flush runs one Sync covering everything applied before it started.
func (g *groupCommit) flush() {
	target := g.latest.Load()
	err := g.store.Sync()
	g.mu.Lock()
	if err != nil {
		g.err = err
	} else if target > g.durable.Load() {
		g.durable.Store(target)
	}
	g.syncing = false
	close(g.done)
	g.done = make(chan struct{})
	g.mu.Unlock()
}
