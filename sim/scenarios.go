package sim

import "fmt"

// The scenarios here are focused tests that every log-shipping core must
// pass in the same way, written once against Cluster. Each starts from a
// cluster where the leader (chain head, primary) and its follower (the
// next replica, a backup) have their configuration, and fails the test
// through Cluster.T.

// LostEntriesResent checks that entries lost on the way are sent again,
// from the oldest unacknowledged one, after resendTicks without ack
// progress, and not before. entries matches the leader's MsgEntries.
func (c *Cluster[M, R]) LostEntriesResent(leader, follower string, resendTicks int, entries func(M) bool) {
	c.T.Helper()
	c.Run()
	c.Drop = entries
	for _, d := range Labels("e", 1, 4) {
		c.Propose(leader, d)
	}
	c.Run()
	c.Drop = nil
	if got := c.Node(follower).Applied; len(got) != 0 {
		c.T.Fatalf("%s applied %q although every batch was lost", follower, got)
	}
	c.Tick(leader, resendTicks-1)
	if len(c.Queue) != 0 {
		c.T.Fatalf("%s sent %d messages before ResendTicks", leader, len(c.Queue))
	}
	c.Tick(leader, 1)
	c.Run()
	c.WantApplied(follower, Labels("e", 1, 4)...)
	if got := c.Node(leader).Commit; got != 4 {
		c.T.Fatalf("%s commit %d, want 4", leader, got)
	}
}

// GapAsksAgain checks that a batch that does not continue the follower's
// log is dropped and the follower says Hello, without waiting for a timer.
// entries matches the leader's MsgEntries.
func (c *Cluster[M, R]) GapAsksAgain(leader, follower string, entries func(M) bool) {
	c.T.Helper()
	c.Run()
	c.Drop = DropN(1, entries)
	for _, d := range Labels("e", 1, 6) {
		c.Propose(leader, d)
	}
	c.Run()
	c.WantApplied(follower, Labels("e", 1, 6)...)
}

// Labels returns prefix+from .. prefix+to ("e1", "e2", ...), the data of
// test entries.
func Labels(prefix string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}
