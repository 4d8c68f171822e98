package checkpoint_test

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/lockstep/lockstep/protocol"
	"github.com/lockstep/lockstep/protocol/checkpoint"
	"github.com/lockstep/lockstep/sim"
)

// simKeys is how many keys clients use: few enough for contention, and
// for porcupine, which checks each key on its own.
const simKeys = 6

func keyName(i int) string { return fmt.Sprintf("k%d", i) }

// simNode is one replica incarnation: a Core and the runtime around it,
// whose store is a map at a store seq. At the primary the runtime executes
// writes at once, tracks the keys they dirty and closes epochs into
// checkpoints; elsewhere it installs checkpoints and snapshots whole.
type simNode struct {
	name  string
	index int
	inc   int
	id    string // name#incarnation
	born  uint64 // the master's epoch when this incarnation started
	alive bool

	suspected bool
	detectAt  int64
	core      *checkpoint.Core
	cfg       checkpoint.Config // the newest configuration handed to core
	cfgAt     int64             // the step the last configuration scheduled for it arrives
	report    checkpoint.Status // as last reported to the master

	kv       map[string]string
	seq      uint64 // the store seq
	digest   uint64 // of kv, kept up to date by set
	dirty    [simKeys]bool
	pending  []checkpoint.Checkpoint // handed out by Ready.Install, not yet installed
	at       stateKey                // what the last install or restore made the state
	commit   uint64                  // the highest Ready.Commit
	office   uint64                  // the epoch whose released writes were last checked here
	restored uint64                  // the epoch in which it last restored a snapshot
}

func (w *world) newNode(name string, index, inc int) *simNode {
	n := &simNode{name: name, index: index, inc: inc, id: fmt.Sprintf("%s#%d", name, inc), born: w.cfg.Epoch, alive: true, kv: map[string]string{}}
	opts := w.p.opts
	opts.ID = name
	n.core = checkpoint.New(opts, 0)
	n.report = n.core.Detail()
	return n
}

// set changes one key, keeping the digest of the state: a sum over keys,
// so that it does not depend on the order of changes.
func (n *simNode) set(k, v string) {
	n.digest += kvHash(k, v) - kvHash(k, n.kv[k])
	n.kv[k] = v
}

func kvHash(k, v string) uint64 {
	if v == "" {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(k))
	h.Write([]byte{0})
	h.Write([]byte(v))
	return h.Sum64()
}

// simWrite is one append a client made: its token is unique, so that a
// state can be searched for it.
type simWrite struct {
	op    sim.OpID
	key   string
	token string
	seq   uint64
}

// simClient runs one operation at a time at the master's primary: an
// append, or a read whose reply, like a write's, waits for the commit
// point to reach the store seq it was made at.
type simClient struct {
	id      int
	busy    bool
	read    bool
	value   string
	node    *simNode
	write   simWrite
	counter int
}

// clients starts operations at the master's primary, if its runtime may
// execute them. A refused operation is not recorded: it had no effect.
func (w *world) clients() error {
	n := w.node(w.cfg.Members[0])
	if !w.faulty || !n.alive || !n.core.ReadReady() {
		return nil
	}
	for _, c := range w.cl {
		if c.busy || w.rng.Float64() >= w.p.pOp {
			continue
		}
		ki := w.rng.IntN(simKeys)
		key := keyName(ki)
		c.busy, c.node = true, n
		if c.read = w.rng.IntN(3) == 0; c.read {
			c.value = n.kv[key]
			c.write = simWrite{op: w.hist.Invoke(c.id, sim.KVInput{Op: sim.KVGet, Key: key}), key: key, seq: n.seq}
			w.count.Inc("reads")
			w.logf("client %d: get %s at %s seq %d", c.id, key, n.id, n.seq)
			if err := w.releaseUpTo(n); err != nil {
				return err
			}
			continue
		}
		c.counter++
		token := fmt.Sprintf("<%d.%d>", c.id, c.counter)
		n.seq += 1 + uint64(w.rng.IntN(2))
		n.set(key, n.kv[key]+token)
		n.dirty[ki] = true
		c.write = simWrite{op: w.hist.Invoke(c.id, sim.KVInput{Op: sim.KVAppend, Key: key, Value: token}), key: key, token: token, seq: n.seq}
		w.count.Inc("writes")
		w.logf("client %d: append %s %s at %s seq %d", c.id, key, token, n.id, n.seq)
	}
	return nil
}

// runtimes lets every live runtime do its share of a step: a primary may
// close its epoch, a backup installs some of what it was given, and each
// core may tick.
func (w *world) runtimes() error {
	for _, n := range w.nodes {
		if !n.alive {
			continue
		}
		if err := w.closeEpoch(n); err != nil {
			return err
		}
		if n.alive && len(n.pending) > 0 && w.rng.Float64() < w.installP(n) {
			if err := w.install(n, 1+w.rng.IntN(len(n.pending))); err != nil {
				return err
			}
		}
		if n.alive && w.rng.Float64() < w.p.pTick {
			n.core.Tick()
			if err := w.drain(n); err != nil {
				return err
			}
		}
	}
	return nil
}

// installP is how likely n's runtime installs in a step. A slow runtime
// is a fault: it recovers in the quiet steps.
func (w *world) installP(n *simNode) float64 {
	if w.faulty {
		return w.p.pInstall[n.index]
	}
	return max(w.p.pInstall[n.index], 0.5)
}

// closeEpoch checkpoints the primary's dirty keys, now or once there are
// too many of them; on ErrWindowFull the epoch stays open and grows.
func (w *world) closeEpoch(n *simNode) error {
	dirty := 0
	for _, d := range n.dirty {
		if d {
			dirty++
		}
	}
	if dirty == 0 || !n.core.ReadReady() || (dirty < w.p.bound && w.rng.Float64() >= w.p.pClose) {
		return nil
	}
	data := w.checkpointData(n)
	can := n.core.CanCheckpoint()
	err := n.core.CloseEpoch(n.seq, data)
	if can != (err == nil) {
		return violation("%s: CanCheckpoint %t, but CloseEpoch: %v", n.id, can, err)
	}
	switch {
	case errors.Is(err, checkpoint.ErrWindowFull):
		w.count.Inc("full windows")
		return w.checkWindow(n)
	case err != nil:
		return violation("%s: CloseEpoch(%d): %v", n.id, n.seq, err)
	}
	if err := w.record(stateKey{n.id, n.seq}, n.digest); err != nil {
		return err
	}
	n.dirty = [simKeys]bool{}
	if len(data) > w.p.opts.MaxChunk {
		w.count.Inc("checkpoints in several chunks")
	}
	w.logf("%s checkpoints %d (%d bytes)", n.id, n.seq, len(data))
	return w.afterCheckpoint(n)
}

// checkpointData encodes the final value of every dirty key, after a
// line naming the state it leads to: the incarnation that made it.
func (w *world) checkpointData(n *simNode) []byte {
	var b strings.Builder
	b.WriteString(n.id + "\n")
	for i, d := range n.dirty {
		if d {
			fmt.Fprintf(&b, "%s=%s\n", keyName(i), n.kv[keyName(i)])
		}
	}
	return []byte(b.String())
}

// checkWindow checks that a refused checkpoint had a reason: some peer
// that has not acknowledged Window checkpoints.
func (w *world) checkWindow(n *simNode) error {
	for _, p := range n.core.Detail().Peers {
		if p.Lag >= w.p.opts.Window {
			return nil
		}
	}
	return violation("%s: window full, but no peer lags %d: %+v", n.id, w.p.opts.Window, n.core.Detail().Peers)
}

// record adds a state to the oracle: the same incarnation at the same
// store seq must always have the same state.
func (w *world) record(k stateKey, digest uint64) error {
	if d, ok := w.states[k]; ok && d != digest {
		return violation("%s has two states at seq %d", k.origin, k.seq)
	}
	w.states[k] = digest
	return nil
}

// install applies the first k pending checkpoints, each one whole, and
// checks invariant 1: the state is then exactly the one the checkpoint's
// primary had at its seq, never part of an epoch.
func (w *world) install(n *simNode, k int) error {
	for _, cp := range n.pending[:k] {
		if cp.Seq <= n.seq {
			return violation("%s installs %d at %d", n.id, cp.Seq, n.seq)
		}
		origin, records, _ := strings.Cut(string(cp.Data), "\n")
		for _, rec := range strings.Split(strings.TrimSuffix(records, "\n"), "\n") {
			key, value, _ := strings.Cut(rec, "=")
			n.set(key, value)
		}
		n.seq, n.at = cp.Seq, stateKey{origin, cp.Seq}
		if want, ok := w.states[n.at]; !ok || want != n.digest {
			return violation("%s installed checkpoint %d of %s and is not at that state (known %t)", n.id, cp.Seq, origin, ok)
		}
	}
	n.pending = n.pending[k:]
	n.core.Applied(n.seq)
	w.logf("%s installs up to %d", n.id, n.seq)
	return w.drain(n)
}

// drain plays the runtime's part after every call into n's core.
func (w *world) drain(n *simNode) error {
	if !n.alive || !n.core.HasReady() {
		return nil
	}
	rd, err := ready(n)
	if err != nil {
		return err
	}
	return w.effects(n, rd, -1)
}

// ready takes n's effects through the contract (protocol.Core.Ready) and
// decodes the messages its outbox encodes, as a runtime would send them.
// The simulator closes epochs itself (its cores have no clock), so a core
// that asks for one breaks the contract.
func ready(n *simNode) (checkpoint.Ready, error) {
	rd := n.core.Ready()
	out := checkpoint.Ready{Install: rd.Apply, Commit: rd.Commit, NeedSnapshot: rd.NeedSnapshot}
	if rd.TakeDelta {
		return out, violation("%s asks to close an epoch without a clock or dirty bound", n.id)
	}
	for i := range outboxLen(rd.Messages) {
		to, b := rd.Messages.Encode(i, nil)
		m, err := checkpoint.DecodeMessage(b)
		if err != nil || m.To != to {
			return out, violation("%s: message %d to %s decodes as %+v, %v", n.id, i, to, m, err)
		}
		out.Messages = append(out.Messages, m)
	}
	return out, nil
}

// outboxLen is the number of messages in o, which may be nil.
func outboxLen(o protocol.Outbox) int {
	if o == nil {
		return 0
	}
	return o.Len()
}

// effects sends the first send messages of rd (all if send < 0), then
// queues its checkpoints to install, releases replies up to its commit
// point and starts a snapshot transfer.
func (w *world) effects(n *simNode, rd checkpoint.Ready, send int) error {
	for i, m := range rd.Messages {
		if send >= 0 && i >= send {
			break
		}
		if m.From != n.name || m.Epoch != n.cfg.Epoch {
			return violation("%s sends %s from %q in epoch %d, its epoch %d", n.id, m.Type, m.From, m.Epoch, n.cfg.Epoch)
		}
		w.net.Send(w.step, m.From, m.To, m)
	}
	n.pending = append(n.pending, rd.Install...)
	if rd.Commit != 0 {
		if err := w.committed(n, rd.Commit); err != nil {
			return err
		}
	}
	if rd.NeedSnapshot != "" {
		if n.restored == n.cfg.Epoch {
			// The primary holds every checkpoint after a snapshot it
			// serves until the peer has it: one is enough per epoch.
			return violation("%s needs a second snapshot in epoch %d", n.id, n.cfg.Epoch)
		}
		w.logf("%s needs a snapshot from %s", n.id, rd.NeedSnapshot)
		w.fetchLater(n, rd.NeedSnapshot)
	}
	return nil
}

// committed checks invariants 3 and 4 when n's commit point grows to c
// and releases the replies it covers.
func (w *world) committed(n *simNode, c uint64) error {
	st := n.core.Detail()
	if st.Role != checkpoint.RolePrimary || c <= n.commit || c > n.seq {
		return violation("%s (%s) commits %d after %d at store seq %d", n.id, st.Role, c, n.commit, n.seq)
	}
	for _, b := range n.cfg.Members[1:] {
		// Invariant 4: every backup of the epoch has installed c; one that
		// crashed since still had (a restarted incarnation was born later).
		if m := w.node(b); m.born <= n.cfg.Epoch && m.seq < c {
			return violation("%s commits %d in epoch %d, but backup %s is at %d", n.id, c, n.cfg.Epoch, m.id, m.seq)
		}
	}
	n.commit = c
	w.logf("%s commits %d", n.id, c)
	if err := w.releaseUpTo(n); err != nil {
		return err
	}
	if w.plan.node == n && w.plan.kind == planAfterCommit && c >= w.plan.seq {
		w.planned(n)
	}
	return nil
}

// releaseUpTo answers every client waiting on n whose seq n's commit
// point covers, checking invariant 3 (one releasing primary per epoch)
// and invariant 2 (the master's primary holds every released write).
func (w *world) releaseUpTo(n *simNode) error {
	for _, c := range w.cl {
		if !c.busy || c.node != n || c.write.seq > n.commit {
			continue
		}
		if id, ok := w.releaser[n.cfg.Epoch]; ok && id != n.id {
			return violation("%s and %s both release replies in epoch %d", id, n.id, n.cfg.Epoch)
		}
		w.releaser[n.cfg.Epoch] = n.id
		c.busy = false
		if c.read {
			w.hist.Return(c.write.op, sim.KVOutput{Value: c.value})
			continue
		}
		w.hist.Return(c.write.op, nil)
		w.released = append(w.released, c.write)
		w.count.Inc("writes released")
		if p := w.node(w.cfg.Members[0]); p != n && p.alive && p.core.ReadReady() {
			if err := w.holdsReleased(p, c.write); err != nil {
				return err
			}
		}
	}
	return nil
}

// holdsReleased checks that p's state holds the given released writes.
func (w *world) holdsReleased(p *simNode, writes ...simWrite) error {
	for _, r := range writes {
		if !strings.Contains(p.kv[r.key], r.token) {
			return violation("write %s %s released at seq %d is lost: primary %s has %q", r.key, r.token, r.seq, p.id, p.kv[r.key])
		}
	}
	return nil
}

// giveUp ends the operations of the clients waiting on a crashed node:
// a read had no effect; a write may or may not have, which the final
// state tells (see finish).
func (w *world) giveUp(n *simNode) {
	for _, c := range w.cl {
		if !c.busy || c.node != n {
			continue
		}
		c.busy = false
		if c.read {
			w.hist.Forget(c.write.op)
			continue
		}
		w.givenUp = append(w.givenUp, c.write)
	}
}
