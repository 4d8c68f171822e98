package replica

import (
	"context"
	"time"

	"github.com/lockstep/lockstep/coord"
)

// Stepping a replica by hand. Run is a loop over these calls; a
// simulation makes them itself, on one goroutine and with its own clock,
// so that the real runtime runs under a seed that replays exactly. Each
// call carries out the core's effects before it returns: messages are
// handed to the Sender, entries applied, the commit point published.

// InstallConfig installs a configuration from the coordinator (an older
// or equal epoch is ignored) and carries out its effects.
func (r *Replica) InstallConfig(ctx context.Context, cfg coord.Config) {
	r.applyConfig(cfg)
	r.handleReady(ctx)
}

// TickAt advances the core's timers by one tick, releases the commit
// waiters whose deadline is before now with a timeout, and retries a
// failed snapshot transfer whose backoff has passed.
func (r *Replica) TickAt(ctx context.Context, now time.Time) {
	r.mu.Lock()
	r.core.Tick()
	r.mu.Unlock()
	r.commit.expire(now, r.errWaitTimeout())
	r.retryFetch(ctx, now)
	r.handleReady(ctx)
}

// Flush hands the core the writes the head applied since the last call,
// so they leave in one message, cuts a checkpoint epoch early if its dirty
// state passed its bound, and carries out the effects.
func (r *Replica) Flush(ctx context.Context) {
	r.mu.Lock()
	r.flushHeadAppliedLocked()
	if closer, ok := r.core.(epochCloser); ok && closer.dirtyPastBound() {
		r.closeEpochLocked(closer)
	}
	r.mu.Unlock()
	r.handleReady(ctx)
}

// CloseEpoch closes a checkpoint epoch (a no-op for protocols without
// epochs) and carries out the effects.
func (r *Replica) CloseEpoch(ctx context.Context) {
	if closer, ok := r.core.(epochCloser); ok {
		r.mu.Lock()
		r.closeEpochLocked(closer)
		r.mu.Unlock()
	}
	r.handleReady(ctx)
}
