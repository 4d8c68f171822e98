package replica

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrNotRetired: Retire could not leave a state that is all committed
// (the protocol keeps no such state, or the commit point did not reach
// what the replica applied in time). The node then rejoins by snapshot.
var ErrNotRetired = errors.New("lockstep: state not known to be all committed")

// retirePoll is how often Retire looks at the commit point while it waits.
const retirePoll = time.Millisecond

// Retire prepares a graceful stop so that the state left on disk can be
// kept: it stops applying what upstream sends, waits until the replica
// knows that everything it applied is committed (Status.Commit reaches
// its applied seq), makes the store durable, and returns that seq. Such a
// state is a prefix of the group's history, which no reconfiguration can
// undo, so the next process on this disk may rejoin on it as a joiner and
// catch up from the tail's retained log rather than by snapshot.
//
// The replica applies nothing after Retire, successful or not: call it
// last, once clients are gone, before leaving the group. Only chain
// replication supports it; the others return ErrNotRetired, as does a
// wait that ctx ends first.
//
// It also returns the history the state was committed in: the Forced
// count of the configurations this replica ran under (coord.Config). A
// replica that saw a forced recovery while it ran cannot name one, and
// returns ErrNotRetired.
func (r *Replica) Retire(ctx context.Context) (seq, forced uint64, err error) {
	if r.proto != ProtocolChain {
		return 0, 0, fmt.Errorf("%w: %s replicas always rejoin by snapshot", ErrNotRetired, r.proto)
	}
	if err := r.Err(); err != nil {
		return 0, 0, err
	}
	r.mu.RLock()
	history, known, mixed := r.history.forced, r.history.known, r.history.mixed
	r.mu.RUnlock()
	switch {
	case r.sm.AppliedSeq() == 0:
		return 0, 0, fmt.Errorf("%w: nothing applied", ErrNotRetired)
	case !known || mixed:
		return 0, 0, fmt.Errorf("%w: the group's history changed (a forced recovery) while this replica ran", ErrNotRetired)
	}
	r.Flush(ctx) // the head's last proposals leave before the replica stops sending
	r.readyMu.Lock()
	r.retiring.Store(true)
	r.readyMu.Unlock()
	t := time.NewTicker(retirePoll)
	defer t.Stop()
	for {
		r.mu.Lock()
		st, applied := r.core.Status(), r.sm.AppliedSeq()
		r.mu.Unlock()
		if applied > 0 && st.Commit >= applied {
			if err := r.store.Sync(); err != nil {
				return 0, 0, r.fail(fmt.Errorf("%w: %w", ErrStorage, err))
			}
			return applied, history, nil
		}
		select {
		case <-ctx.Done():
			return 0, 0, fmt.Errorf("%w: commit point %d, applied %d: %w", ErrNotRetired, st.Commit, applied, ctx.Err())
		case <-t.C:
		}
	}
}

// historySeen is the Forced count (coord.Config) of the configurations a
// replica ran under: the history its state belongs to.
type historySeen struct {
	forced uint64
	known  bool // a configuration was installed
	mixed  bool // configurations with different counts were
}

// see records cfg's count.
func (h *historySeen) see(forced uint64) {
	switch {
	case !h.known:
		h.forced, h.known = forced, true
	case forced != h.forced:
		h.mixed = true
	}
}
