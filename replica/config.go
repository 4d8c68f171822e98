package replica

import (
	"errors"
	"fmt"

	"github.com/lockstep/lockstep/coord"
)

// applyConfig installs a new configuration in the core and publishes the
// resulting role. Waiting writers re-check whether they can still commit.
func (r *Replica) applyConfig(cfg coord.Config) {
	if cfg.Epoch <= r.epoch.Load() {
		return
	}
	if cfg.Protocol != "" && cfg.Protocol != r.core.Protocol() {
		r.fail(fmt.Errorf("%w: the group runs %s, this replica %s; start it with --protocol %s",
			ErrWrongProtocol, cfg.Protocol, r.core.Protocol(), cfg.Protocol))
		return
	}
	r.mu.Lock()
	r.flushHeadAppliedLocked()
	r.cfg = cfg
	r.member = r.core.SetConfig(cfg, r.opts.Name, r.opts.Incarnation)
	for _, m := range r.early.take() {
		if err := r.core.Step(m); errors.Is(err, errFutureEpoch) {
			r.early.keep(m) // newer still: keep for the next configuration
		}
	}
	st := r.core.Status()
	r.mu.Unlock()
	r.role.Store(uint32(st.Role))
	r.epoch.Store(cfg.Epoch)
	r.routes.setConfig(cfg)
	if !st.Role.orders() {
		r.commit.abandon(ErrOutcomeUnknown)
	}
	r.commit.wake()
	r.log.Info("configuration", "epoch", cfg.Epoch, "role", st.Role.String(), "members", names(cfg.Members), "joining", joiningName(cfg))
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
