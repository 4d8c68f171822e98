package nodesim

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lockstep/lockstep/sim"
)

// settle lets the healed cluster finish: clients start nothing new, and
// within Params.Settle every operation ends, every node is a member of
// the configuration (no joiner stuck) and the members agree on what they
// applied. Then one client reads every key, so that a lost acknowledged
// write shows in the history, which is checked last.
func (w *World) settle() error {
	for _, c := range w.clients {
		c.quiet = true
	}
	deadline := w.now + w.p.Settle.Milliseconds()
	if err := w.until(deadline, w.quiescent); err != nil {
		return err
	}
	for k := range w.p.Keys {
		c := w.clients[k%len(w.clients)]
		c.script = append(c.script, op{key: fmt.Sprintf("k%d", k)})
	}
	done := func() bool {
		for _, c := range w.clients {
			if c.op != nil || len(c.script) > 0 {
				return false
			}
		}
		return true
	}
	if err := w.until(w.now+w.p.Settle.Milliseconds(), done); err != nil {
		return err
	}
	return w.checkHistory()
}

// checkHistory checks the clients' history for linearizability, per key.
func (w *World) checkHistory() error {
	return sim.CheckLinearizable(&w.hist, 30*time.Second, sim.VisualizationPath("nodesim-"+w.p.Protocol, w.seed))
}

// errGroupLost: the faults left no live complete member, none that holds
// every acknowledged write and could carry the group on, so it rightly
// stays down; lockstep's replicas restart empty.
var errGroupLost = errors.New("nodesim: group lost for good")

// groupLost reports whether the configuration has no member left that
// holds the group's state and could serve, and the group cannot re-form
// from its members' disks either (a total outage can: see recoverable).
func (w *World) groupLost() bool {
	cfg := w.coord.cfg
	if cfg == nil {
		return false
	}
	for _, m := range cfg.Members {
		n := w.byName(m.Name)
		if n == nil || n.down || n.inc != m.Incarnation {
			continue
		}
		if n.rep.Status().Complete {
			return false
		}
	}
	return !w.recoverable()
}

// recoverable reports whether each member of the configuration that is
// gone has its disk still there for a restarted process to keep:
// coord.Plan then re-forms the group from them, with the live ones.
func (w *World) recoverable() bool {
	cfg := w.coord.cfg
	for _, m := range cfg.Members {
		n := w.byName(m.Name)
		if n != nil && !n.down && n.inc == m.Incarnation {
			continue // live, if incomplete
		}
		if n == nil || cfg.Data[m.Name] == "" || n.disk.id != cfg.Data[m.Name] {
			return false
		}
	}
	return true
}

// until steps until cond holds, or fails at deadline with a liveness
// violation that says what is stuck.
func (w *World) until(deadline int64, cond func() bool) error {
	for !cond() {
		// A lost group stays lost: restarted replicas are empty. Five
		// seconds after the heal every crashed process has restarted.
		if (w.now >= deadline || w.now-w.healedAt == 5000) && w.groupLost() {
			return errGroupLost
		}
		if w.now >= deadline {
			return sim.Violation("liveness: at %d ms, %d ms after the faults healed, the group has not settled: %s",
				w.now, w.now-w.healedAt, w.describe())
		}
		if err := w.step(); err != nil {
			return err
		}
	}
	return nil
}

// quiescent reports whether no client waits, every node serves as a
// member of the newest configuration, and the members hold the same
// history, all of it committed.
func (w *World) quiescent() bool {
	for _, c := range w.clients {
		if c.op != nil {
			return false
		}
	}
	cfg := w.coord.cfg
	if cfg == nil || cfg.Joining != nil || len(cfg.Members) != len(w.nodes) {
		return false
	}
	var applied uint64
	for i, m := range cfg.Members {
		n := w.byName(m.Name)
		if n == nil || n.down || n.inc != m.Incarnation || n.seenEpoch != cfg.Epoch {
			return false
		}
		st := n.rep.Status()
		if i == 0 {
			applied = st.Applied
			if st.Commit != st.Applied {
				return false
			}
		} else if st.Applied != applied {
			return false
		}
	}
	return true
}

// describe is the state of every node, for a liveness failure.
func (w *World) describe() string {
	var b strings.Builder
	if cfg := w.coord.cfg; cfg != nil {
		fmt.Fprintf(&b, "configuration epoch %d members %v joining %v; ", cfg.Epoch, cfg.Members, cfg.Joining)
	}
	for _, n := range w.nodes {
		st := n.rep.Status()
		fmt.Fprintf(&b, "%s(%s) down=%v role=%s state=%s epoch=%d applied=%d commit=%d complete=%v; ",
			n.name, n.inc, n.down, st.Role, st.State, st.Epoch, st.Applied, st.Commit, st.Complete)
	}
	for _, c := range w.clients {
		if c.op != nil {
			fmt.Fprintf(&b, "%s waits on %s; ", c.name, c.describe())
		}
	}
	return b.String()
}

// checkReplicas compares the members' states byte for byte.
func (w *World) checkReplicas() error {
	var first, firstName string
	for _, m := range w.coord.cfg.Members {
		n := w.byName(m.Name)
		out, _, err := n.rep.Read([][]byte{[]byte("lockstep.digest")}, nil)
		if err != nil {
			return sim.Violation("digest of %s: %v", n.name, err)
		}
		d, err := parseReply(out)
		if err != nil {
			return sim.Violation("digest of %s: %v", n.name, err)
		}
		if first == "" {
			first, firstName = d, n.name
		} else if d != first {
			return sim.Violation("replicas differ at quiescence: %s has %s, %s has %s", firstName, first, n.name, d)
		}
	}
	return nil
}
