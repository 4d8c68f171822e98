package sim

import (
	"fmt"
	"slices"
)

// Publish makes cfg, in the next epoch, the master's configuration and
// schedules its delivery to every live node, in order per node, after a
// random delay: configurations reach nodes at different steps, as they do
// from a real coordinator.
func (w *World[M, R]) Publish(cfg Config, why string) {
	cfg.Epoch = Config(w.Cfg).Epoch + 1
	w.Cfg = cfg
	w.Stats.Configs++
	w.Trace.Logf("config %d %v joining %q: %s", cfg.Epoch, cfg.Members, cfg.Joining, why)
	for _, n := range w.Nodes {
		if !n.Alive {
			continue
		}
		at := w.Step + int64(w.Rng.IntN(int(w.Params.CfgDelay)+1))
		if k := len(n.configs); k > 0 {
			at = max(at, n.configs[k-1].at)
		}
		n.configs = append(n.configs, timedConfig{at: at, cfg: w.Cfg})
	}
}

// Change is what Reconfigure did.
type Change int

// The changes Reconfigure makes, one at most per call.
const (
	Unchanged Change = iota
	Removed          // a failed member or joiner
	Promoted         // the caught-up joiner became the last member
	Added            // a live node outside the configuration became the joiner
)

// Reconfigure is the part of the master that the protocols share, one
// change at most per step: remove a member or the joiner that Failed,
// else promote the joiner once caughtUp says so, else add a live node as
// joiner while members are missing. promotion names a promotion in the
// trace, a format with one %s for the joiner. A chain's master just calls
// it, so a failed head is removed like any member; a primary-backup
// master replaces a failed primary itself (a failover) and calls it only
// while the primary has not failed.
func (w *World[M, R]) Reconfigure(caughtUp func(j *Replica[R]) bool, promotion string) Change {
	cfg := Config(w.Cfg)
	for _, name := range append(slices.Clone(cfg.Members), cfg.Joining) {
		n := w.By[name]
		if n == nil || !w.Failed(n) {
			continue
		}
		next := Config{Members: slices.DeleteFunc(slices.Clone(cfg.Members), func(s string) bool { return s == name }), Joining: cfg.Joining}
		if name == cfg.Joining {
			next.Joining = ""
		}
		w.Publish(next, "remove "+name)
		return Removed
	}
	if j := w.By[cfg.Joining]; j != nil && j.Alive && !j.Suspected {
		if caughtUp(j) {
			w.Publish(Config{Members: append(slices.Clone(cfg.Members), j.Name)}, fmt.Sprintf(promotion, j.Name))
			return Promoted
		}
		return Unchanged
	}
	if cfg.Joining != "" || len(cfg.Members) >= w.Size {
		return Unchanged
	}
	for _, n := range w.Nodes {
		if n.Alive && !n.Suspected && !w.InConfig(n.Name) {
			w.Publish(Config{Members: slices.Clone(cfg.Members), Joining: n.Name}, "add "+n.Name)
			return Added
		}
	}
	return Unchanged
}

// deliverConfigs hands every live node the configurations due. A
// suspected node that learns it was removed (its role is then 0) crashes,
// to restart empty as a removed replica must.
func (w *World[M, R]) deliverConfigs() error {
	for _, n := range w.Nodes {
		for n.Alive && len(n.configs) > 0 && n.configs[0].at <= w.Step {
			cfg := n.configs[0].cfg
			n.configs = n.configs[1:]
			n.Core.SetConfig(cfg)
			if err := w.Drain(n); err != nil {
				return err
			}
			if n.Suspected && w.removed(n) {
				w.Trace.Logf("%s learns it was removed", n.Name)
				w.crash(n)
			}
		}
	}
	return nil
}

// removed reports whether n's core is outside its configuration.
func (w *World[M, R]) removed(n *Replica[R]) bool {
	role, _ := w.Rules.Role(n.Core)
	return role == 0
}
