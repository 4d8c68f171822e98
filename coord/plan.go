package coord

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// PlanOptions are the policy inputs of Plan.
type PlanOptions struct {
	// Protocol is the replication protocol a new group is bootstrapped with;
	// DefaultProtocol if empty. An existing group keeps its protocol.
	Protocol string
	// BootstrapExpect is how many live nodes must be registered before the
	// group is first formed (at least 1).
	BootstrapExpect int
}

// Plan decides the next configuration of a group from the current one (nil
// if the group has none) and the live nodes. It is pure: no I/O, no clock.
// It makes at most one change per call, bumping Epoch by one, and the
// caller applies it with CASConfig and calls again until nothing changes.
// In priority order:
//
//  1. Bootstrap. With no configuration, once BootstrapExpect nodes are live,
//     the first BootstrapExpect of them in registration order become the
//     members, at epoch 1. Every node starts empty, so no data is at stake.
//     A group is bootstrapped only once: Plan never creates a configuration
//     when cur is non-nil.
//  2. Takeover (primary-backup and checkpoint). If the primary (Members[0]) is not
//     live, the live backup that reports Complete with the highest Applied
//     becomes primary, and every dead member and joiner is removed in the
//     same change. A backup that is not complete (a joiner made backup
//     that has not yet received everything the primary may have
//     acknowledged) never becomes primary; with no complete backup alive
//     the group is down and the configuration stays as it is. Because the
//     change is a compare-and-swap on the configuration, only one
//     takeover of a given epoch can win: VMware FT's atomic test-and-set.
//  3. Removal. Members whose (name, incarnation) is not live are removed,
//     wherever they sit in the chain, and a joiner that is not live is
//     cleared. The last member is never removed: if every member is dead the
//     group is down and the configuration stays as it is. Re-forming it from
//     nodes that are alive but never held the data (or restarted with their
//     memory wiped) would silently lose writes that were acknowledged; it
//     takes an operator, or a member coming back with its data, to decide.
//  4. Promotion. A joiner that reports StateCaughtUp for the current epoch
//     is appended as the new tail (or backup). A caught-up report from an older epoch
//     does not count: the chain changed since and the joiner must catch up
//     with the new tail.
//  5. Join. If there is no joiner and at least one member is live, the
//     earliest-registered live node that is not a member (a new node, or a
//     restarted process, which has a new incarnation) becomes the joiner.
//     Nodes in StateStopping are not picked.
//
// nodes need not be sorted; Plan orders them by CreateRevision. reason
// describes the change for logs, or why nothing changed.
func Plan(cur *Config, nodes []NodeInfo, opts PlanOptions) (next Config, changed bool, reason string) {
	next, changed, reason = plan(cur, nodes, opts)
	if changed {
		next.pruneData()
	}
	return next, changed, reason
}

func plan(cur *Config, nodes []NodeInfo, opts PlanOptions) (Config, bool, string) {
	live := slices.Clone(nodes)
	slices.SortStableFunc(live, func(a, b NodeInfo) int {
		return compareInt64(a.CreateRevision, b.CreateRevision)
	})
	if cur == nil {
		return planBootstrap(live, opts)
	}
	byName := make(map[string]NodeInfo, len(live))
	for _, n := range live {
		byName[n.Name] = n
	}
	isLive := func(m Member) bool {
		n, ok := byName[m.Name]
		return ok && n.Incarnation == m.Incarnation
	}
	if needsRecovery(*cur, byName, isLive) {
		return planRecovery(*cur, byName, isLive)
	}
	if hasPrimary(cur.Protocol) && len(cur.Members) > 0 && !isLive(cur.Members[0]) {
		return planTakeover(*cur, byName, isLive)
	}
	if next, ok, why := planRemoval(*cur, isLive); ok || why != "" {
		return next, ok, why
	}
	if cur.Joining != nil {
		return planPromotion(*cur, byName[cur.Joining.Name])
	}
	return planJoin(*cur, live)
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func planBootstrap(live []NodeInfo, opts PlanOptions) (Config, bool, string) {
	expect := max(opts.BootstrapExpect, 1)
	if len(live) < expect {
		return Config{}, false, fmt.Sprintf("bootstrap waits for %d live nodes, have %d", expect, len(live))
	}
	proto := opts.Protocol
	if proto == "" {
		proto = DefaultProtocol
	}
	next := Config{Epoch: 1, Protocol: proto}
	for _, n := range live[:expect] {
		next.Members = append(next.Members, n.Member())
		next.setData(n.Name, n.DataID)
	}
	// The first nodes to register form the group, in name order, so a
	// cluster of n1, n2, n3 starts as the chain n1 -> n2 -> n3 whatever
	// order their processes happened to start in.
	slices.SortFunc(next.Members, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return next, true, "bootstrap with " + memberList(next.Members)
}

// planRemoval removes dead members and a dead joiner. It returns a
// non-empty reason without a change when the whole group is dead.
func planRemoval(cur Config, isLive func(Member) bool) (Config, bool, string) {
	next := cur.clone()
	next.Members = next.Members[:0]
	var gone []Member
	for _, m := range cur.Members {
		if isLive(m) {
			next.Members = append(next.Members, m)
		} else {
			gone = append(gone, m)
		}
	}
	if len(next.Members) == 0 && len(cur.Members) > 0 {
		return cur.clone(), false, "group down: every member is dead; keeping configuration"
	}
	var parts []string
	if len(gone) > 0 {
		parts = append(parts, "remove dead "+memberList(gone))
	}
	if cur.Joining != nil && !isLive(*cur.Joining) {
		parts = append(parts, "clear dead joiner "+cur.Joining.String())
		next.Joining = nil
	}
	if len(parts) == 0 {
		return Config{}, false, ""
	}
	next.Epoch++
	next.Revision = 0
	return next, true, strings.Join(parts, "; ")
}

func planPromotion(cur Config, joiner NodeInfo) (Config, bool, string) {
	if joiner.State != StateCaughtUp || joiner.Epoch != cur.Epoch {
		return cur.clone(), false, fmt.Sprintf("joiner %s not caught up at epoch %d (state %q, epoch %d)",
			cur.Joining, cur.Epoch, joiner.State, joiner.Epoch)
	}
	next := cur.clone()
	next.Members = append(next.Members, *cur.Joining)
	next.Joining = nil
	next.Epoch++
	next.Revision = 0
	place := "tail"
	if hasPrimary(cur.Protocol) {
		place = "backup"
	}
	return next, true, "promote " + cur.Joining.String() + " to " + place
}

// planTakeover replaces a dead primary with the most advanced complete
// live backup, removing every dead member and joiner at once.
func planTakeover(cur Config, byName map[string]NodeInfo, isLive func(Member) bool) (Config, bool, string) {
	best := -1
	for i, m := range cur.Members[1:] {
		n, ok := byName[m.Name]
		if !ok || !isLive(m) || !n.Complete {
			continue
		}
		if best < 0 || n.Applied > byName[cur.Members[best].Name].Applied {
			best = i + 1
		}
	}
	dead := cur.Members[0]
	if best < 0 {
		return cur.clone(), false, fmt.Sprintf("group down: primary %s is dead and no live backup is complete; keeping configuration", dead)
	}
	next := cur.clone()
	next.Members = []Member{cur.Members[best]}
	var gone []Member
	for i, m := range cur.Members {
		switch {
		case i == best:
		case isLive(m):
			next.Members = append(next.Members, m)
		default:
			gone = append(gone, m)
		}
	}
	if cur.Joining != nil && !isLive(*cur.Joining) {
		next.Joining = nil
	}
	next.Epoch++
	next.Revision = 0
	return next, true, fmt.Sprintf("primary %s is dead: backup %s takes over (applied %d); remove dead %s",
		dead, cur.Members[best], byName[cur.Members[best].Name].Applied, memberList(gone))
}

func planJoin(cur Config, live []NodeInfo) (Config, bool, string) {
	if len(cur.Members) == 0 {
		return cur.clone(), false, "no members to join"
	}
	for _, n := range live {
		if n.State == StateStopping || cur.Index(n.Member()) >= 0 {
			continue
		}
		next := cur.clone()
		j := n.Member()
		next.Joining = &j
		next.setData(n.Name, n.DataID)
		next.Epoch++
		next.Revision = 0
		return next, true, "add joiner " + j.String()
	}
	return cur.clone(), false, "no change"
}

// needsRecovery reports whether a member of cur is dead and no live member
// is complete (holds every write the group may have acknowledged). Then
// removing the dead would leave the group with no member that can carry it
// on, and would drop the state only the dead hold: after a total outage,
// say, the first lease to expire would otherwise get its member removed
// while the others' registrations linger, and the group would re-form
// from members that lag. The group waits for the dead to come back on
// their data instead (planRecovery).
func needsRecovery(cur Config, byName map[string]NodeInfo, isLive func(Member) bool) bool {
	dead := false
	for _, m := range cur.Members {
		if !isLive(m) {
			dead = true
		} else if byName[m.Name].Complete {
			return false
		}
	}
	return dead
}

// planRecovery re-forms a group that has dead members and no complete live
// one (a total outage: power lost, every process killed) from the members'
// own data directories, once a process restarted on each dead member's
// directory has registered: each dead member is replaced by the new
// incarnation on its directory, in the same order, at a new epoch, and
// the live ones stay. The order is what makes it safe: each replica made
// its state durable before passing it downstream (see
// replica.Options.SyncBeforeSend), so the head or primary holds every
// write any other member holds, and a complete member holds every write
// that was acknowledged. The restarted replicas then catch up from the
// head or primary as after any reconfiguration, and every one but the
// head counts as incomplete until it has. While a dead member's directory
// is missing, the group stays down and the reason names whom it waits
// for: re-forming without it could lose writes only it holds.
func planRecovery(cur Config, byName map[string]NodeInfo, isLive func(Member) bool) (Config, bool, string) {
	next := cur.clone()
	var missing []string
	allDead := true
	for i, m := range cur.Members {
		if isLive(m) {
			allDead = false
			continue
		}
		n, ok := byName[m.Name]
		want := cur.Data[m.Name]
		if !ok || want == "" || n.DataID != want {
			missing = append(missing, m.Name+describeData(want))
			continue
		}
		next.Members[i] = n.Member()
	}
	why := "every member is dead"
	if !allDead {
		why = "no live member is complete"
	}
	if len(missing) > 0 {
		return cur.clone(), false, "group down: " + why + "; waiting for a restart on the data of " + strings.Join(missing, ", ")
	}
	if next.Joining != nil && !isLive(*next.Joining) {
		next.Joining = nil
	}
	next.Epoch++
	next.Revision = 0
	return next, true, "recover " + memberList(next.Members) + " from their data: " + why
}

// ErrNotDown means a forced recovery was asked of a group that is not down
// (a member lives) or that has no member whose data is back.
var ErrNotDown = errors.New("lockstep: group is not down waiting for its members' data")

// ForceRecovery is the operator's way on when a group is down after a total
// outage and a member's data directory will not come back (a lost disk):
// it re-forms the group, like planRecovery, from the members whose
// restarted processes are live on their own directories, in the same
// order, and returns the members left out. What may be lost with them:
// under every protocol, each complete member holds every acknowledged
// write (a write is acknowledged once every member has it durably), so
// only a member that had just joined may lack some; writes that were
// never acknowledged (a chain head's last entries, say) may be lost or
// kept. It fails with ErrNotDown if a member lives or none is back.
func ForceRecovery(cur Config, nodes []NodeInfo) (next Config, missing []Member, err error) {
	byName := make(map[string]NodeInfo, len(nodes))
	for _, n := range nodes {
		if cur.Index(n.Member()) >= 0 {
			return Config{}, nil, fmt.Errorf("%w: member %s is live", ErrNotDown, n.Member())
		}
		byName[n.Name] = n
	}
	next = cur.clone()
	next.Members = next.Members[:0]
	for _, m := range cur.Members {
		n, ok := byName[m.Name]
		if want := cur.Data[m.Name]; !ok || want == "" || n.DataID != want {
			missing = append(missing, m)
			continue
		}
		next.Members = append(next.Members, n.Member())
	}
	if len(next.Members) == 0 {
		return Config{}, nil, fmt.Errorf("%w: no member's data is back; start at least one member on its data directory", ErrNotDown)
	}
	next.Joining = nil
	next.Epoch++
	next.Forced++
	next.Revision = 0
	next.pruneData()
	return next, missing, nil
}

// describeData names a member's data directory for a plan reason.
func describeData(id string) string {
	if id == "" {
		return " (kept no durable data)"
	}
	return " (data " + id + ")"
}

// KeepData decides whether a process named name that starts on a data
// directory with id dataID keeps the state in it: only when the group's
// configuration cur names that directory as a member's. The group may
// then be down (a total outage), and Plan re-forms it from the members'
// directories. If instead the group lives on and makes the process a
// joiner, the replica refuses (replica.ErrStaleState) and the process
// restarts, by then no longer a member, and discards the state: it may
// hold entries the group never committed and has since replaced, which
// only a complete copy may overwrite. Whether the other members live is
// not asked: after a power loss their registrations linger until their
// leases expire, and discarding a member's directory then could leave
// the group waiting for it forever.
func KeepData(cur *Config, name, dataID string) bool {
	return cur != nil && dataID != "" && cur.Data[name] == dataID &&
		slices.ContainsFunc(cur.Members, func(m Member) bool { return m.Name == name })
}

// Clean is what a node records on its disk when it stops gracefully with
// a state that is all committed (replica.Retire): the seq it holds, the
// data directory's id, and the history it was committed in.
type Clean struct {
	Seq    uint64 `json:"seq"`
	DataID string `json:"data_id"`
	Forced uint64 `json:"forced"`
}

// KeepClean decides whether a process that starts on a data directory
// with id dataID at applied seq, which is not a member's (KeepData says
// no), keeps it as a joiner's state: only when the directory's clean-stop
// record c matches it exactly (nothing was applied after the record was
// made) and the group's history is still the one it was committed in (no
// forced recovery since). The state is then a prefix of the group's
// history, and the joiner catches up from the tail's retained log.
func KeepClean(cur *Config, c Clean, dataID string, seq uint64) bool {
	return cur != nil && dataID != "" && seq > 0 &&
		c.Seq == seq && c.DataID == dataID && c.Forced == cur.Forced
}

func memberList(ms []Member) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.String()
	}
	return "[" + strings.Join(parts, " ") + "]"
}
