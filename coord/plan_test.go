package coord

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// live returns NodeInfos for names, registered in the given order, each in
// its "i-<name>" incarnation (as members() builds them).
func live(names ...string) []NodeInfo {
	out := make([]NodeInfo, len(names))
	for i, n := range names {
		out[i] = NodeInfo{Name: n, Incarnation: "i-" + n, State: StateServing, Complete: true, CreateRevision: int64(10 + i)}
	}
	return out
}

func cfg(epoch uint64, joining string, names ...string) *Config {
	c := &Config{Epoch: epoch, Protocol: "chain", Members: members(names...), Revision: 99}
	if joining != "" {
		j := members(joining)[0]
		c.Joining = &j
	}
	return c
}

func with(nodes []NodeInfo, name string, f func(*NodeInfo)) []NodeInfo {
	for i := range nodes {
		if nodes[i].Name == name {
			f(&nodes[i])
		}
	}
	return nodes
}

func TestPlan(t *testing.T) {
	opts := PlanOptions{Protocol: "chain", BootstrapExpect: 3}
	tests := []struct {
		name    string
		cur     *Config
		nodes   []NodeInfo
		opts    *PlanOptions // nil: opts above
		want    *Config      // nil: no change
		because string       // substring of the reason
	}{
		{name: "bootstrap waits for expect", nodes: live("a", "b"), because: "waits for 3"},
		{name: "bootstrap in registration order",
			nodes: []NodeInfo{
				{Name: "c", Incarnation: "i-c", CreateRevision: 30},
				{Name: "a", Incarnation: "i-a", CreateRevision: 10},
				{Name: "d", Incarnation: "i-d", CreateRevision: 40},
				{Name: "b", Incarnation: "i-b", CreateRevision: 20},
			},
			want: cfg(1, "", "a", "b", "c"), because: "bootstrap"},
		{name: "bootstrap defaults", nodes: live("a"), opts: &PlanOptions{},
			want: &Config{Epoch: 1, Protocol: DefaultProtocol, Members: members("a")}},
		{name: "steady", cur: cfg(5, "", "a", "b", "c"), nodes: live("a", "b", "c"), because: "no change"},
		{name: "head dies", cur: cfg(5, "", "a", "b", "c"), nodes: live("b", "c"), want: cfg(6, "", "b", "c"), because: "remove dead [a/i-a]"},
		{name: "middle dies", cur: cfg(5, "", "a", "b", "c"), nodes: live("a", "c"), want: cfg(6, "", "a", "c")},
		{name: "tail dies", cur: cfg(5, "", "a", "b", "c"), nodes: live("a", "b"), want: cfg(6, "", "a", "b")},
		{name: "two die at once", cur: cfg(5, "", "a", "b", "c"), nodes: live("b"), want: cfg(6, "", "b")},
		{name: "all members dead keeps config", cur: cfg(5, "", "a", "b"), nodes: live("x", "y", "z"), because: "group down"},
		{name: "all members dead with joiner keeps config", cur: cfg(5, "x", "a"), nodes: live("x"), because: "group down"},
		{name: "joiner dies", cur: cfg(5, "d", "a", "b"), nodes: live("a", "b"), want: cfg(6, "", "a", "b"), because: "clear dead joiner"},
		{name: "member and joiner die together", cur: cfg(5, "d", "a", "b"), nodes: live("a"), want: cfg(6, "", "a")},
		{name: "new node joins", cur: cfg(5, "", "a", "b"), nodes: live("a", "b", "d", "e"), want: cfg(6, "d", "a", "b"), because: "add joiner d/i-d"},
		{name: "stopping node does not join", cur: cfg(5, "", "a"),
			nodes: with(live("a", "d", "e"), "d", func(n *NodeInfo) { n.State = StateStopping }), want: cfg(6, "e", "a")},
		{name: "one joiner at a time", cur: cfg(5, "d", "a", "b"), nodes: live("a", "b", "d", "e"), because: "not caught up"},
		{name: "caught-up joiner promoted to tail", cur: cfg(5, "d", "a", "b"),
			nodes: with(live("a", "b", "d"), "d", func(n *NodeInfo) { n.State, n.Epoch = StateCaughtUp, 5 }),
			want:  cfg(6, "", "a", "b", "d"), because: "promote d/i-d"},
		{name: "caught up at a stale epoch waits", cur: cfg(5, "d", "a", "b"),
			nodes: with(live("a", "b", "d"), "d", func(n *NodeInfo) { n.State, n.Epoch = StateCaughtUp, 4 }), because: "not caught up"},
		{name: "removal before promotion", cur: cfg(5, "d", "a", "b"),
			nodes: with(live("a", "d"), "d", func(n *NodeInfo) { n.State, n.Epoch = StateCaughtUp, 5 }), want: cfg(6, "d", "a")},
		{name: "restarted member is removed first", cur: cfg(5, "", "a", "b", "c"),
			nodes: with(live("a", "b", "c"), "b", func(n *NodeInfo) { n.Incarnation, n.CreateRevision = "i-b2", 50 }),
			want:  cfg(6, "", "a", "c")},
		{name: "restarted member then rejoins", cur: cfg(6, "", "a", "c"),
			nodes: with(live("a", "b", "c"), "b", func(n *NodeInfo) { n.Incarnation, n.CreateRevision = "i-b2", 50 }),
			want:  &Config{Epoch: 7, Protocol: "chain", Members: members("a", "c"), Joining: &Member{Name: "b", Incarnation: "i-b2"}}},
		{name: "restarted joiner is cleared", cur: cfg(5, "d", "a"),
			nodes: with(live("a", "d"), "d", func(n *NodeInfo) { n.Incarnation = "i-d2" }), want: cfg(6, "", "a")},
		{name: "existing group never re-bootstraps", cur: cfg(5, "", "a"), nodes: nil, because: "group down"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := opts
			if tc.opts != nil {
				o = *tc.opts
			}
			checkPlan(t, tc.cur, tc.nodes, o, tc.want, tc.because)
		})
	}
}

// checkPlan runs Plan and checks its answer: no change when want is nil,
// else exactly want, a successor the CAS rules allow, a reason mentioning
// because, and the input left untouched.
func checkPlan(t *testing.T, cur *Config, nodes []NodeInfo, opts PlanOptions, want *Config, because string) {
	t.Helper()
	var before Config
	if cur != nil {
		before = cur.clone()
	}
	next, changed, reason := Plan(cur, nodes, opts)
	if cur != nil && !reflect.DeepEqual(*cur, before) {
		t.Fatalf("Plan modified its input: %+v, was %+v", *cur, before)
	}
	if changed != (want != nil) {
		t.Fatalf("changed = %v (reason %q, next %+v), want %v", changed, reason, next, want != nil)
	}
	if want != nil {
		next.Revision, want.Revision = 0, 0
		if !reflect.DeepEqual(next, *want) {
			t.Fatalf("next = %+v joining %v, want %+v joining %v", next, next.Joining, *want, want.Joining)
		}
		var prev Config
		if cur != nil {
			prev = *cur
		}
		if err := checkSuccessor(prev, next); err != nil {
			t.Fatalf("plan breaks the CAS rules: %v", err)
		}
	}
	if !strings.Contains(reason, because) {
		t.Fatalf("reason %q does not mention %q", reason, because)
	}
}

// TestPlanConverges applies Plan repeatedly, as the reconfigurator does,
// and checks it reaches a fixed point with every live node a member.
func TestPlanConverges(t *testing.T) {
	nodes := live("a", "b", "c", "d", "e")
	var cur *Config
	for step := 0; ; step++ {
		if step > 20 {
			t.Fatalf("no fixed point after 20 steps: %+v", cur)
		}
		next, changed, _ := Plan(cur, nodes, PlanOptions{BootstrapExpect: 2})
		if !changed {
			break
		}
		if cur != nil && next.Epoch != cur.Epoch+1 {
			t.Fatalf("epoch %d after %d", next.Epoch, cur.Epoch)
		}
		cur = &next
		if cur.Joining != nil { // the joiner catches up at once
			nodes = with(nodes, cur.Joining.Name, func(n *NodeInfo) { n.State, n.Epoch = StateCaughtUp, cur.Epoch })
		}
	}
	if want := members("a", "b", "c", "d", "e"); !reflect.DeepEqual(cur.Members, want) || cur.Joining != nil {
		t.Fatalf("fixed point %+v, want members %v and no joiner", cur, want)
	}
}

func pbcfg(epoch uint64, joining string, names ...string) *Config {
	c := cfg(epoch, joining, names...)
	c.Protocol = ProtocolPrimaryBackup
	return c
}

// complete marks names as complete members that applied the given seqs,
// and every other node as incomplete.
func complete(nodes []NodeInfo, applied map[string]uint64) []NodeInfo {
	for i := range nodes {
		nodes[i].Complete = false
	}
	for name, a := range applied {
		nodes = with(nodes, name, func(n *NodeInfo) { n.Complete, n.Applied = true, a })
	}
	return nodes
}

// TestPlanPrimaryBackup covers the takeover rule: only a complete live
// backup becomes primary, the most advanced one, and the dead are removed
// in the same change.
func TestPlanPrimaryBackup(t *testing.T) {
	tests := []struct {
		name    string
		cur     *Config
		nodes   []NodeInfo
		want    *Config
		because string
	}{
		{name: "bootstrap orders by name", nodes: live("b", "a"), want: &Config{Epoch: 1, Protocol: ProtocolPrimaryBackup, Members: members("a", "b")}},
		{name: "backup dies", cur: pbcfg(5, "", "a", "b", "c"), nodes: complete(live("a", "c"), map[string]uint64{"c": 9}),
			want: pbcfg(6, "", "a", "c"), because: "remove dead [b/i-b]"},
		{name: "most advanced complete backup takes over", cur: pbcfg(5, "", "a", "b", "c"),
			nodes: complete(live("b", "c"), map[string]uint64{"b": 7, "c": 9}),
			want:  pbcfg(6, "", "c", "b"), because: "backup c/i-c takes over (applied 9)"},
		{name: "tie goes to the earlier backup", cur: pbcfg(5, "", "a", "b", "c"),
			nodes: complete(live("b", "c"), map[string]uint64{"b": 9, "c": 9}), want: pbcfg(6, "", "b", "c")},
		{name: "an incomplete backup is passed over", cur: pbcfg(5, "", "a", "b", "c"),
			nodes: complete(live("b", "c"), map[string]uint64{"b": 3}), want: pbcfg(6, "", "b", "c")},
		{name: "an incomplete backup is passed over however far it got", cur: pbcfg(5, "", "a", "b", "c"),
			nodes: with(complete(live("b", "c"), map[string]uint64{"b": 3}), "c", func(n *NodeInfo) { n.Applied = 9 }),
			want:  pbcfg(6, "", "b", "c"), because: "backup b/i-b takes over (applied 3)"},
		{name: "no complete backup: group down", cur: pbcfg(5, "", "a", "b"), nodes: complete(live("b"), nil), because: "no live member is complete"},
		{name: "takeover removes dead backups and joiner", cur: pbcfg(5, "d", "a", "b", "c"),
			nodes: complete(live("c"), map[string]uint64{"c": 4}), want: pbcfg(6, "", "c"), because: "remove dead [a/i-a b/i-b]"},
		{name: "takeover keeps a live joiner", cur: pbcfg(5, "d", "a", "b"),
			nodes: complete(live("b", "d"), map[string]uint64{"b": 4}), want: pbcfg(6, "d", "b")},
		{name: "fresh node after total loss stays out", cur: pbcfg(5, "", "a", "b"), nodes: live("z"), because: "every member is dead"},
		{name: "checkpoint groups take over the same way", cur: func() *Config { c := pbcfg(5, "", "a", "b"); c.Protocol = ProtocolCheckpoint; return c }(),
			nodes: complete(live("b"), map[string]uint64{"b": 4}),
			want:  func() *Config { c := pbcfg(6, "", "b"); c.Protocol = ProtocolCheckpoint; return c }(), because: "takes over"},
		{name: "caught-up joiner becomes backup", cur: pbcfg(5, "d", "a"),
			nodes: with(live("a", "d"), "d", func(n *NodeInfo) { n.State, n.Epoch = StateCaughtUp, 5 }),
			want:  pbcfg(6, "", "a", "d"), because: "to backup"},
	}
	opts := PlanOptions{Protocol: ProtocolPrimaryBackup, BootstrapExpect: 2}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { checkPlan(t, tc.cur, tc.nodes, opts, tc.want, tc.because) })
	}
}

// withData gives names' nodes the data directory "d-<name>".
func withData(nodes []NodeInfo, names ...string) []NodeInfo {
	for _, name := range names {
		nodes = with(nodes, name, func(n *NodeInfo) { n.DataID = "d-" + name })
	}
	return nodes
}

// dataOf records the data directory "d-<name>" of names in c.
func dataOf(c *Config, names ...string) *Config {
	for _, name := range names {
		c.setData(name, "d-"+name)
	}
	return c
}

// restarted returns the live nodes of names as new incarnations
// ("j-<name>") on their data directories, as after a total outage.
func restarted(names ...string) []NodeInfo {
	nodes := withData(live(names...), names...)
	for i := range nodes {
		nodes[i].Incarnation = "j-" + nodes[i].Name
	}
	return nodes
}

// TestPlanRecovery covers a total outage: a group whose every member died
// is re-formed, in the same order, once a process restarted on each
// member's data directory is live, and not before.
func TestPlanRecovery(t *testing.T) {
	recovered := func(epoch uint64, proto string, names ...string) *Config {
		c := dataOf(&Config{Epoch: epoch, Protocol: proto}, names...)
		for _, n := range names {
			c.Members = append(c.Members, Member{Name: n, Incarnation: "j-" + n})
		}
		return c
	}
	chain := func() *Config { return dataOf(cfg(7, "", "c", "a", "b"), "a", "b", "c") }
	tests := []struct {
		name    string
		cur     *Config
		nodes   []NodeInfo
		want    *Config
		because string
	}{
		{name: "every member back: same order", cur: chain(), nodes: restarted("a", "b", "c"),
			want: recovered(8, "chain", "c", "a", "b"), because: "recover [c/j-c a/j-a b/j-b]"},
		{name: "a member missing: wait for it", cur: chain(), nodes: restarted("a", "c"), because: "waiting for a restart on the data of b (data d-b)"},
		{name: "a member back on another directory: wait", cur: chain(),
			nodes: with(restarted("a", "b", "c"), "b", func(n *NodeInfo) { n.DataID = "d-new" }), because: "data of b (data d-b)"},
		{name: "members without durable data: wait", cur: cfg(7, "", "a", "b"), nodes: restarted("a", "b"), because: "a (kept no durable data)"},
		{name: "the dead joiner is dropped", cur: dataOf(cfg(7, "d", "a", "b"), "a", "b", "d"), nodes: restarted("a", "b"),
			want: recovered(8, "chain", "a", "b")},
		{name: "primary-backup keeps its primary", cur: dataOf(pbcfg(4, "", "b", "a"), "a", "b"), nodes: restarted("a", "b"),
			want: recovered(5, ProtocolPrimaryBackup, "b", "a")},
		{name: "a live member: no recovery", cur: dataOf(cfg(7, "", "a", "b"), "a", "b"), nodes: append(live("a"), restarted("b")...),
			want: dataOf(cfg(8, "", "a"), "a"), because: "remove dead [b/i-b]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkPlan(t, tc.cur, tc.nodes, PlanOptions{BootstrapExpect: 2}, tc.want, tc.because)
		})
	}
}

// TestPlanRecordsData checks that the configuration keeps each member's
// data directory from bootstrap and join, and forgets a removed one's.
func TestPlanRecordsData(t *testing.T) {
	next, _, _ := Plan(nil, withData(live("a", "b"), "a", "b"), PlanOptions{BootstrapExpect: 2})
	if want := map[string]string{"a": "d-a", "b": "d-b"}; !reflect.DeepEqual(next.Data, want) {
		t.Fatalf("bootstrap data = %v, want %v", next.Data, want)
	}
	next, _, _ = Plan(&next, withData(live("a", "b", "c"), "a", "b", "c"), PlanOptions{})
	if next.Joining == nil || next.Data["c"] != "d-c" {
		t.Fatalf("join = %+v, want c joining with data d-c", next)
	}
	next, _, _ = Plan(&next, live("a", "c"), PlanOptions{})
	if _, ok := next.Data["b"]; ok || len(next.Data) != 2 {
		t.Fatalf("after b died data = %v, want a and c only", next.Data)
	}
}

func TestKeepData(t *testing.T) {
	cur := dataOf(cfg(3, "d", "a", "b"), "a", "b", "d")
	tests := []struct {
		name string
		who  string
		data string
		want bool
	}{
		{name: "a member's own directory", who: "a", data: "d-a", want: true},
		{name: "another directory", who: "a", data: "d-x"},
		{name: "memory storage", who: "a"},
		{name: "the joiner's directory", who: "d", data: "d-d"},
		{name: "not in the group", who: "z", data: "d-z"},
	}
	for _, tc := range tests {
		if got := KeepData(cur, tc.who, tc.data); got != tc.want {
			t.Errorf("%s: KeepData = %v, want %v", tc.name, got, tc.want)
		}
	}
	if KeepData(nil, "a", "d-a") {
		t.Error("KeepData with no configuration = true")
	}
}

func TestForceRecovery(t *testing.T) {
	cur := *dataOf(cfg(7, "d", "a", "b", "c"), "a", "b", "c", "d")
	next, missing, err := ForceRecovery(cur, restarted("c", "a"))
	if err != nil {
		t.Fatal(err)
	}
	want := dataOf(&Config{Epoch: 8, Protocol: "chain", Members: []Member{{Name: "a", Incarnation: "j-a"}, {Name: "c", Incarnation: "j-c"}}, Forced: 1}, "a", "c")
	if next.Revision = 0; !reflect.DeepEqual(next, *want) {
		t.Fatalf("next = %+v, want %+v", next, *want)
	}
	if len(missing) != 1 || missing[0].Name != "b" {
		t.Fatalf("missing = %v, want b", missing)
	}
	if err := checkSuccessor(cur, next); err != nil {
		t.Fatalf("breaks the CAS rules: %v", err)
	}
	if _, _, err := ForceRecovery(cur, append(live("a"), restarted("c")...)); !errors.Is(err, ErrNotDown) {
		t.Fatalf("with a live member: %v, want ErrNotDown", err)
	}
	if _, _, err := ForceRecovery(cur, with(restarted("a"), "a", func(n *NodeInfo) { n.DataID = "d-x" })); !errors.Is(err, ErrNotDown) {
		t.Fatalf("with no member's data back: %v, want ErrNotDown", err)
	}
}

// TestKeepClean: a clean-stop record lets a state be kept only if nothing
// was applied since, it is the same directory's, and no recovery was
// forced since (which may have lost writes it counts as committed).
func TestKeepClean(t *testing.T) {
	cur := &Config{Epoch: 9, Forced: 1}
	rec := Clean{Seq: 40, DataID: "d-a", Forced: 1}
	if !KeepClean(cur, rec, "d-a", 40) {
		t.Fatal("a matching record is not kept")
	}
	for what, ok := range map[string]bool{
		"applied since":   KeepClean(cur, rec, "d-a", 41),
		"other directory": KeepClean(cur, rec, "d-b", 40),
		"forced since":    KeepClean(&Config{Epoch: 10, Forced: 2}, rec, "d-a", 40),
		"no group":        KeepClean(nil, rec, "d-a", 40),
		"memory storage":  KeepClean(cur, Clean{Seq: 40, Forced: 1}, "", 40),
	} {
		if ok {
			t.Errorf("kept with %s", what)
		}
	}
}

// TestPlanKeepsTheOnlyCompleteMember: a dead head whose only live
// successor is incomplete (promoted, not yet at its barrier) is not
// removed: that would drop the only copy of writes the head committed
// (after a total outage, the head's lease may expire first while the
// tail's registration lingers). The group waits for the head's data and
// re-forms with it in front once it is back.
func TestPlanKeepsTheOnlyCompleteMember(t *testing.T) {
	cur := dataOf(cfg(6, "", "a", "b"), "a", "b")
	lagging := complete(live("b"), nil)
	checkPlan(t, cur, lagging, PlanOptions{}, nil, "group down: no live member is complete; waiting for a restart on the data of a")
	back := append(lagging, restarted("a")...)
	want := dataOf(cfg(7, "", "a", "b"), "a", "b")
	want.Members[0].Incarnation = "j-a"
	checkPlan(t, cur, back, PlanOptions{}, want, "recover")
	// With a complete live member the dead head is removed as before.
	checkPlan(t, cur, live("b"), PlanOptions{}, dataOf(cfg(7, "", "b"), "b"), "remove dead [a/i-a]")
}
