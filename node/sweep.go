package node

import (
	"context"
	"time"

	"github.com/lockstep/lockstep/statemachine"
)

// ExpirySweeper is implemented by state machines whose entries expire
// (kv.Machine). The runtime drives it so that expired entries are deleted
// through the ordinary write path, the same way on every replica.
type ExpirySweeper interface {
	PrepareExpireSweep(after []byte, limit int, env statemachine.Env) (statemachine.Update, []byte, error)
}

// RunExpirySweeper deletes expired keys in the background, examining batch
// keys every interval, until ctx ends. It does nothing if the state machine
// has no expiry.
func (n *Node) RunExpirySweeper(ctx context.Context, interval time.Duration, batch int) {
	sw, ok := n.sm.(ExpirySweeper)
	if !ok {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var after []byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		next, err := n.sweepOnce(sw, after, batch)
		if err != nil {
			return // the node has failed; Err reports why
		}
		after = next
	}
}

// sweepOnce runs one sweep step as a write. It holds the write lock only
// for one batch, so clients wait at most one batch's scan.
func (n *Node) sweepOnce(sw ExpirySweeper, after []byte, batch int) ([]byte, error) {
	if err := n.Err(); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.env.nowMillis = n.now()
	u, next, err := sw.PrepareExpireSweep(after, batch, &n.env)
	if err != nil {
		return nil, n.fail(err)
	}
	if u == nil {
		return next, nil
	}
	seq := n.sm.AppliedSeq() + 1
	if _, err := n.sm.Apply(seq, u, nil); err != nil {
		return nil, n.fail(err)
	}
	n.commit.applied(seq)
	return next, nil
}
