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
// so they leave in one message, and carries out the effects (which close
// a checkpoint epoch whose dirty state passed its bound).
func (r *Replica) Flush(ctx context.Context) {
	r.mu.Lock()
	r.flushHeadAppliedLocked()
	r.mu.Unlock()
	r.handleReady(ctx)
}

// CloseEpoch asks the core for its effects, which close a checkpoint epoch
// whose time is up: the core times its epochs on Options.Now, and this
// makes sure it is asked when nothing else happens.
func (r *Replica) CloseEpoch(ctx context.Context) { r.handleReady(ctx) }
