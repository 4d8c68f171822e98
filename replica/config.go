package replica

import (
	"errors"
	"fmt"

	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/protocol"
)

// applyConfig installs a new configuration in the core and publishes the
// resulting role. Waiting writers re-check whether they can still commit.
func (r *Replica) applyConfig(cfg coord.Config) {
	if cfg.Epoch <= r.epoch.Load() {
		return
	}
	if cfg.Protocol != "" && cfg.Protocol != r.proto {
		r.fail(fmt.Errorf("%w: the group runs %s, this replica %s; start it with --protocol %s",
			ErrWrongProtocol, cfg.Protocol, r.proto, cfg.Protocol))
		return
	}
	r.mu.Lock()
	r.flushHeadAppliedLocked()
	r.cfg = cfg
	r.history.see(cfg.Forced)
	r.member = setCoreConfig(r.core, cfg, r.opts.Name, r.opts.Incarnation)
	if err := r.checkRecoveryLocked(cfg); err != nil {
		r.mu.Unlock()
		r.fail(err)
		return
	}
	r.trackChangesLocked()
	for _, m := range r.early.take() {
		if err := r.core.Step(m); errors.Is(err, protocol.ErrFutureEpoch) {
			r.early.keep(m) // newer still: keep for the next configuration
		}
	}
	st := r.core.Status()
	r.mu.Unlock()
	r.role.Store(uint32(st.Role))
	r.epoch.Store(cfg.Epoch)
	r.stats.configs.Add(1)
	r.routes.setConfig(cfg)
	if !st.Role.Orders() {
		r.commit.abandon(ErrOutcomeUnknown)
	}
	r.commit.wake()
	r.log.Info("configuration", "epoch", cfg.Epoch, "role", st.Role.String(), "members", names(cfg.Members), "joining", joiningName(cfg))
}

// checkRecoveryLocked fails a Recovered replica that a configuration names
// as the joiner: the group was re-formed without its state, which may hold
// writes the group never committed (see Options.Recovered).
func (r *Replica) checkRecoveryLocked(cfg coord.Config) error {
	if !r.opts.Recovered || r.recoveryChecked {
		return nil
	}
	me := coord.Member{Name: r.opts.Name, Incarnation: r.opts.Incarnation}
	if cfg.Index(me) >= 0 {
		r.recoveryChecked = true
		return nil
	}
	if j := cfg.Joining; j != nil && *j == me {
		if r.opts.Committed {
			// The kept state is all committed too (a clean stop): a
			// prefix of the group's history, which a joiner may keep.
			r.recoveryChecked = true
			return nil
		}
		return fmt.Errorf("%w: the group was re-formed at epoch %d without the state this process kept (applied %d); restart it to rejoin empty",
			ErrStaleState, cfg.Epoch, r.recoveredSeq)
	}
	return nil
}

// trackChangesLocked makes the state machine record what writes change
// exactly while the core executes ahead of replication (a checkpoint
// primary): it starts from the state it holds, which its first checkpoint
// covers. Called under mu after every configuration.
func (r *Replica) trackChangesLocked() {
	if spec := r.core.Status().Speculative; spec != r.speculative {
		r.sm.TrackChanges(spec)
		r.speculative = spec
	}
}

func names(ms []coord.Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name
	}
	return out
}

func joiningName(cfg coord.Config) string {
	if cfg.Joining == nil {
		return ""
	}
	return cfg.Joining.Name
}
