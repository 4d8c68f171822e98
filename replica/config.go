package replica

import (
	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/protocol/chain"
)

// chainConfig converts the coordinator's configuration into the core's.
// Members are named by node name, but a member slot belongs to one process
// incarnation: a restarted process with the same name is a new node that
// must rejoin, so its name is hidden from the core until then.
func chainConfig(cfg coord.Config, name, incarnation string) (chain.Config, bool) {
	out := chain.Config{Epoch: cfg.Epoch}
	member := false
	for _, m := range cfg.Members {
		id := m.Name
		if m.Name == name {
			if m.Incarnation == incarnation {
				member = true
			} else {
				id = m.Name + "#" + m.Incarnation
			}
		}
		out.Members = append(out.Members, id)
	}
	if j := cfg.Joining; j != nil {
		out.Joining = j.Name
		if j.Name == name {
			if j.Incarnation == incarnation {
				member = true
			} else {
				out.Joining = j.Name + "#" + j.Incarnation
			}
		}
	}
	return out, member
}

// applyConfig installs a new configuration in the core and publishes the
// resulting role. Waiting writers re-check whether they can still commit.
func (r *Replica) applyConfig(cfg coord.Config) {
	if cfg.Epoch <= r.epoch.Load() {
		return
	}
	cc, member := chainConfig(cfg, r.opts.Name, r.opts.Incarnation)
	r.mu.Lock()
	r.flushHeadAppliedLocked()
	r.cfg = cfg
	r.member = member
	r.core.SetConfig(cc)
	st := r.core.Status()
	r.mu.Unlock()
	r.role.Store(uint32(st.Role))
	r.epoch.Store(cfg.Epoch)
	r.routes.setConfig(cfg)
	r.commit.wake()
	r.log.Info("configuration", "epoch", cfg.Epoch, "role", roleName(st.Role), "members", names(cfg.Members), "joining", joiningName(cfg))
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

// roleName is the word `lockstep status` and INFO use for a role.
func roleName(r chain.Role) string {
	switch r {
	case chain.RoleHead:
		return "head"
	case chain.RoleMiddle:
		return "middle"
	case chain.RoleTail:
		return "tail"
	case chain.RoleSingle:
		return "single"
	case chain.RoleJoining:
		return "joining"
	}
	return "none"
}

func isHead(r chain.Role) bool { return r == chain.RoleHead || r == chain.RoleSingle }
func isTail(r chain.Role) bool { return r == chain.RoleTail || r == chain.RoleSingle }
