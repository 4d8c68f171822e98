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

// ErrRetirePending: TryRetire's answer while the commit point has not
// reached what the replica applied yet.
var ErrRetirePending = errors.New("lockstep: retiring: commit point behind applied")

// Retire prepares a graceful stop so that the state left on disk can be
// kept: it stops applying what upstream sends, waits until the replica
// knows that everything it applied is committed (Status.Commit reaches
// its applied seq), makes the store durable, and returns that seq. Such a
// state is a prefix of the group's history, which no reconfiguration can
// undo, so the next process on this disk may rejoin on it as a joiner and
// catch up from the tail's retained log rather than by snapshot.
//
// The replica applies nothing after Retire, successful or not: call it
// last, once clients are gone, before leaving the group. Chain and
// primary-backup replicas support it; checkpoint replicas return
// ErrNotRetired (a backup's state is a checkpoint, and the primary's runs
// ahead of its commit point), as does a wait that ctx ends first.
//
// It also returns the history the state was committed in: the Forced
// count of the configurations this replica ran under (coord.Config). A
// replica that saw a forced recovery while it ran cannot name one, and
// returns ErrNotRetired.
//
// Retire is BeginRetire and then TryRetire until it is no longer
// pending; a simulation, which cannot block, makes those calls itself.
func (r *Replica) Retire(ctx context.Context) (seq, forced uint64, err error) {
	r.BeginRetire(ctx)
	t := time.NewTicker(retirePoll)
	defer t.Stop()
	for {
		seq, forced, err := r.TryRetire()
		if !errors.Is(err, ErrRetirePending) {
			return seq, forced, err
		}
		select {
		case <-ctx.Done():
			return 0, 0, fmt.Errorf("%w: %w: %w", ErrNotRetired, err, ctx.Err())
		case <-t.C:
		}
	}
}

// BeginRetire sends what the head applied last and stops the replica
// from applying or sending anything more (see Retire).
func (r *Replica) BeginRetire(ctx context.Context) {
	r.Flush(ctx) // the head's last proposals leave before the replica stops sending
	r.readyMu.Lock()
	r.retiring.Store(true)
	r.readyMu.Unlock()
}

// TryRetire reports, after BeginRetire, whether the state is known to be
// all committed: if so it syncs the store and returns the seq and the
// history (see Retire); ErrRetirePending means not yet; ErrNotRetired
// that it cannot be.
func (r *Replica) TryRetire() (seq, forced uint64, err error) {
	if r.proto == ProtocolCheckpoint {
		return 0, 0, fmt.Errorf("%w: %s replicas always rejoin by snapshot", ErrNotRetired, r.proto)
	}
	if err := r.Err(); err != nil {
		return 0, 0, err
	}
	r.mu.Lock()
	st, applied, h := r.core.Status(), r.sm.AppliedSeq(), r.history
	r.mu.Unlock()
	switch {
	case !r.retiring.Load():
		return 0, 0, fmt.Errorf("%w: BeginRetire was not called", ErrNotRetired)
	case applied == 0:
		return 0, 0, fmt.Errorf("%w: nothing applied", ErrNotRetired)
	case !h.known || h.mixed:
		return 0, 0, fmt.Errorf("%w: the group's history changed (a forced recovery) while this replica ran", ErrNotRetired)
	case st.Commit < applied:
		return 0, 0, fmt.Errorf("%w: commit point %d, applied %d", ErrRetirePending, st.Commit, applied)
	}
	if err := r.syncStore(); err != nil {
		return 0, 0, err
	}
	return applied, h.forced, nil
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
