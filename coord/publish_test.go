package coord

import (
	"testing"
	"time"
)

// TestPublishDue: what the leader acts on goes out at once, progress at
// most once a second, and nothing new nothing at all.
func TestPublishDue(t *testing.T) {
	last := NodeInfo{State: StateServing, Role: "tail", Epoch: 3, Applied: 10}
	with := func(f func(*NodeInfo)) NodeInfo { n := last; f(&n); return n }
	cases := []struct {
		name  string
		next  NodeInfo
		since time.Duration
		want  bool
	}{
		{"nothing new", last, time.Hour, false},
		{"new epoch", with(func(n *NodeInfo) { n.Epoch = 4 }), 0, true},
		{"new role", with(func(n *NodeInfo) { n.Role = "head" }), 0, true},
		{"new state", with(func(n *NodeInfo) { n.State = StateCaughtUp }), 0, true},
		{"now complete", with(func(n *NodeInfo) { n.Complete = true }), 0, true},
		{"progress too soon", with(func(n *NodeInfo) { n.Applied = 11 }), 999 * time.Millisecond, false},
		{"progress after a second", with(func(n *NodeInfo) { n.Applied = 11 }), time.Second, true},
		{"lag after a second", with(func(n *NodeInfo) { n.Lag = 5 }), time.Second, true},
		{"commit after a second", with(func(n *NodeInfo) { n.Commit = 9 }), time.Second, true},
	}
	for _, c := range cases {
		if got := PublishDue(last, c.next, c.since); got != c.want {
			t.Errorf("%s: PublishDue = %v, want %v", c.name, got, c.want)
		}
	}
}
