package replica

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lockstep/lockstep/backup"
	"github.com/lockstep/lockstep/protocol"
	"github.com/lockstep/lockstep/resp"
	"github.com/lockstep/lockstep/statemachine"
)

// Internal commands replicas send each other over the client port. A
// forwarded write carries a client id and request number so a retry after a
// failover is answered from the dedup table instead of applied twice. Both
// are answered locally or refused with TRYAGAIN, never forwarded again, so
// a request cannot loop between replicas that disagree about the chain.
//
// lockstep.req is the client-facing form of lockstep.fwd, for clients that
// retry: "lockstep.req <client-id> <request-number> <command> [args...]"
// applies the command at most once per (client-id, request-number), and a
// retry gets the first attempt's reply. A client numbers its requests
// upwards and has one outstanding at a time. Any replica accepts it and
// forwards it, ids and all, to the head or primary.
//
// lockstep.digest is for operators and tests: it is always answered by the
// replica it is sent to, with "seq=<applied> sha256=<hex>" of its whole
// state (the bytes a snapshot of it would carry), so two replicas at the
// same seq can be proven byte-identical. lockstep.backup and
// lockstep.datadigest serve backups from committed state instead (see
// backup.go).
const (
	cmdForwardWrite = "lockstep.fwd"    // lockstep.fwd <client> <num> <command> [args...]
	cmdForwardRead  = "lockstep.read"   // lockstep.read <command> [args...]
	cmdDigest       = "lockstep.digest" // lockstep.digest
	cmdRequest      = "lockstep.req"    // lockstep.req <client-id> <request-number> <command> [args...]
)

// Commands lists the state machine's commands plus the internal ones.
func (r *Replica) Commands() []statemachine.Command {
	cmds := append([]statemachine.Command(nil), r.sm.Commands()...)
	return append(cmds,
		statemachine.Command{Name: cmdForwardWrite, Arity: -4, Kind: statemachine.KindWrite},
		statemachine.Command{Name: cmdForwardRead, Arity: -2, Kind: statemachine.KindRead},
		statemachine.Command{Name: cmdDigest, Arity: 1, Kind: statemachine.KindRead},
		statemachine.Command{Name: cmdRequest, Arity: -4, Kind: statemachine.KindWrite},
		statemachine.Command{Name: backup.Command, Arity: -1, Kind: statemachine.KindRead},
		statemachine.Command{Name: backup.DigestCommand, Arity: -1, Kind: statemachine.KindRead},
	)
}

// Write runs a write at the head or forwards it there.
func (r *Replica) Write(args [][]byte, out []byte) ([]byte, uint64, error) {
	if err := r.Err(); err != nil {
		return out, 0, err
	}
	if strings.EqualFold(string(args[0]), cmdForwardWrite) {
		return r.forwardedWrite(args, out)
	}
	if strings.EqualFold(string(args[0]), cmdRequest) {
		return r.taggedWrite(args, out)
	}
	return r.writeOrForward("", 0, args, out)
}

// writeOrForward proposes a write here when this replica orders writes,
// and otherwise forwards it, with its request id (client "" for none).
func (r *Replica) writeOrForward(client string, num uint64, args [][]byte, out []byte) ([]byte, uint64, error) {
	if r.Role().Orders() && r.leaseValid() {
		out, seq, err := r.propose(client, num, args, out)
		if !errors.Is(err, ErrNotServing) {
			return out, seq, err
		}
	}
	r.stats.forwarded.Add(1)
	out, err := r.forward.Write(client, num, args, out)
	return out, 0, err
}

// taggedWrite serves lockstep.req from a client: at the head or primary
// through the dedup table, elsewhere forwarded with the client's ids. The
// ids are kept apart from the forwarders' own (user/ prefix).
func (r *Replica) taggedWrite(args [][]byte, out []byte) ([]byte, uint64, error) {
	num, err := strconv.ParseUint(string(args[2]), 10, 64)
	if err != nil || len(args[1]) == 0 || num == 0 {
		return resp.AppendError(out, "ERR lockstep.req: want a non-empty client id and a request number above 0"), 0, nil
	}
	return r.writeOrForward("user/"+string(args[1]), num, args[3:], out)
}

// forwardedWrite serves lockstep.fwd from another replica.
func (r *Replica) forwardedWrite(args [][]byte, out []byte) ([]byte, uint64, error) {
	client := string(args[1])
	num, err := strconv.ParseUint(string(args[2]), 10, 64)
	if err != nil || client == "" {
		return resp.AppendError(out, "ERR lockstep.fwd: bad client id or request number"), 0, nil
	}
	if !r.Role().Orders() || !r.leaseValid() {
		return resp.AppendError(out, tryAgain("not the head")), 0, nil
	}
	return r.propose(client, num, args[3:], out)
}

// propose prepares, numbers and applies a write at the head. The reply is
// gated on the returned sequence number reaching the commit point.
func (r *Replica) propose(client string, num uint64, args [][]byte, out []byte) ([]byte, uint64, error) {
	var deadline time.Time // set when the window first turns out full
	for {
		r.mu.Lock()
		if !r.Role().Orders() {
			r.mu.Unlock()
			return out, 0, ErrNotServing
		}
		if client != "" {
			if reply, seq, dup, err := r.sm.Duplicate(client, num); dup {
				r.mu.Unlock()
				if err != nil {
					return resp.AppendError(out, "ERR "+err.Error()), 0, nil
				}
				return append(out, reply...), seq, nil
			}
		}
		r.env.nowMillis = r.opts.Now().UnixMilli()
		var u statemachine.Update
		var err error
		if client != "" {
			u, err = r.sm.PrepareTagged(client, num, args, &r.env)
		} else {
			u, err = r.sm.Prepare(args, &r.env)
		}
		if err != nil {
			r.mu.Unlock()
			return out, 0, r.fail(fmt.Errorf("%w: %w", ErrStorage, err))
		}
		seq, err := r.core.Propose(u)
		if errors.Is(err, protocol.ErrWindowFull) && r.opts.NoWindowWait {
			r.mu.Unlock()
			return out, 0, fmt.Errorf("%w: replication window full", ErrNotServing)
		}
		if errors.Is(err, protocol.ErrWindowFull) {
			if deadline.IsZero() {
				deadline = r.opts.Now().Add(r.opts.WaitTimeout)
			}
			ch := r.commit.windowChanged(deadline)
			r.mu.Unlock()
			if err := waitUntil(ch, deadline); err != nil {
				return out, 0, fmt.Errorf("%w: replication window full", ErrNotServing)
			}
			continue
		}
		if err != nil {
			r.mu.Unlock()
			return out, 0, ErrNotServing
		}
		out, err = r.sm.Apply(seq, u, out)
		if err != nil {
			r.mu.Unlock()
			return out, 0, r.fail(fmt.Errorf("%w: %w", ErrStorage, err))
		}
		// The core hears Applied from the run loop, once for all the
		// writes since its last turn, so they leave in one message.
		r.headApplied = seq
		r.mu.Unlock()
		r.kickLoop()
		return out, seq, nil
	}
}

func waitUntil(ch <-chan struct{}, deadline time.Time) error {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-t.C:
		return context.DeadlineExceeded
	}
}

// Read answers at the tail or primary, or forwards the read there.
func (r *Replica) Read(args [][]byte, out []byte) ([]byte, uint64, error) {
	if err := r.Err(); err != nil {
		return out, 0, err
	}
	if strings.EqualFold(string(args[0]), cmdDigest) {
		return r.digest(out)
	}
	local := strings.EqualFold(string(args[0]), cmdForwardRead)
	if local {
		args = args[1:]
	}
	if r.Role().AnswersReads() && r.leaseValid() {
		answer := r.readLocal
		if strings.EqualFold(string(args[0]), backup.DigestCommand) {
			answer = r.dataDigest
		}
		if out, gate, ok, err := answer(args, out); ok {
			return out, gate, err
		}
	}
	if local {
		return resp.AppendError(out, tryAgain("not the replica that answers reads")), 0, nil
	}
	r.stats.forwarded.Add(1)
	out, err := r.forward.Read(args, out)
	return out, 0, err
}

// digest answers lockstep.digest from this replica's own state. The
// snapshot is taken under the lock, so its seq and bytes agree, and hashed
// outside it while writes continue.
func (r *Replica) digest(out []byte) ([]byte, uint64, error) {
	r.mu.RLock()
	snap, err := r.sm.OpenSnapshot()
	r.mu.RUnlock()
	if err != nil {
		return out, 0, err
	}
	defer snap.Close()
	h := sha256.New()
	if err := snap.Write(h); err != nil {
		return out, 0, err
	}
	return resp.AppendBulkString(out, fmt.Sprintf("seq=%d sha256=%x", snap.Seq(), h.Sum(nil))), 0, nil
}

// readLocal answers a read from this replica's state if the core allows,
// gated as its Status says: a chain tail holds only committed entries, so
// its reply goes at once; a primary has applied entries that may not be
// committed yet, so the reply is gated like a write's on the seq it read
// at, and a failover can never take back what a client has read; a
// replica that executes speculatively waits only for the speculative
// writes the read could observe, which its state machine knows.
func (r *Replica) readLocal(args [][]byte, out []byte) ([]byte, uint64, bool, error) {
	out, gate, readGate, ok, err := r.readLocked(args, out)
	if ok && err == nil {
		err = r.syncAnswered(readGate)
	}
	return out, gate, ok, err
}

// readLocked answers a read from this replica's state, under the lock, and
// says what the reply must wait for (see readLocal).
func (r *Replica) readLocked(args [][]byte, out []byte) ([]byte, uint64, protocol.ReadGate, bool, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	st := r.core.Status()
	if !st.ReadReady {
		return out, 0, st.ReadGate, false, nil
	}
	var gate uint64
	switch st.ReadGate {
	case protocol.GateApplied:
		gate = r.sm.AppliedSeq()
	case protocol.GateSpeculative:
		gate = r.sm.SpeculativeSeq(args)
	}
	if st.ReadGate != protocol.GateNone {
		// Kept state may hold writes that were never acknowledged; none is
		// read before it commits.
		gate = max(gate, r.recoveredSeq)
	}
	out, err := r.sm.Read(args, r.opts.Now().UnixMilli(), out)
	if err != nil {
		// The machine reports a bad request in its reply; an error is
		// state it cannot read (StateMachine's contract), and a replica
		// with a failing disk stops, so that the group fails over to one
		// that can answer.
		return out, 0, st.ReadGate, true, r.fail(fmt.Errorf("%w: %w", ErrStorage, err)) // takes no lock of ours
	}
	return out, gate, st.ReadGate, true, nil
}

// syncAnswered makes what a chain's tail answered from durable before the
// answer leaves. The tail answers from what it applied, which need not be
// on its disk yet (it acks only after a sync, but reads do not wait for
// one); a reply vouches for the writes it shows as an ack does, and after a
// total outage the group may re-form from this tail's disk alone. The sync
// is shared with the writes' group commit and returns at once when nothing
// was applied since the last one. Other protocols' reads wait for the
// commit point, which covers it.
func (r *Replica) syncAnswered(gate protocol.ReadGate) error {
	if gate != protocol.GateNone || !r.opts.SyncBeforeSend {
		return nil
	}
	return r.syncStore()
}

// Wait blocks until the write (or a primary's read) numbered gate has
// committed: every replica in the chain, or every backup, has applied it.
// If this replica stops ordering writes first, the write's fate is unknown
// and the client is told so; likewise after Options.WaitTimeout.
func (r *Replica) Wait(ctx context.Context, gate uint64) error {
	if gate == 0 || r.commit.seq.Load() >= gate {
		return nil
	}
	deadline := r.opts.Now().Add(r.opts.WaitTimeout)
	for {
		done, changed, err := r.commit.wait(gate, deadline)
		if err != nil {
			return err
		}
		if !r.Role().Orders() && r.commit.seq.Load() < gate {
			return ErrOutcomeUnknown
		}
		select {
		case <-done:
			if r.commit.seq.Load() >= gate {
				return nil
			}
			return r.errWaitTimeout()
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// errWaitTimeout is the outcome of a write that did not commit within
// Options.WaitTimeout.
func (r *Replica) errWaitTimeout() error {
	return fmt.Errorf("%w: not committed within %v", ErrOutcomeUnknown, r.opts.WaitTimeout)
}

// OnCommit is Wait without a goroutine: it arranges for done to be called
// once, with nil when gate commits or with the error Wait would return,
// and reports true; or it reports false, without calling done, when gate
// has committed already. done runs on the goroutine that learns the
// outcome (the one that advances the commit point, the run loop, or this
// one) and must not block. The server hands a write's reply to it, so a
// connection's goroutine parks once per request instead of twice.
func (r *Replica) OnCommit(gate uint64, done func(error)) bool {
	if gate == 0 || r.commit.seq.Load() >= gate {
		return false
	}
	if !r.commit.onCommit(gate, r.opts.Now().Add(r.opts.WaitTimeout), done) {
		return false
	}
	if !r.Role().Orders() {
		// The role changed before or while registering: what this
		// replica waits for cannot commit here any more.
		r.commit.abandon(ErrOutcomeUnknown)
	}
	return true
}

// leaseValid reports whether this node may serve as head or tail: it must
// hold a lease that cannot have expired at the coordinator yet.
func (r *Replica) leaseValid() bool { return r.lease == nil || r.lease.Valid() }

func tryAgain(why string) string { return "TRYAGAIN lockstep: " + why }

// RunExpirySweeper deletes expired keys through the head's write path,
// examining batch keys every interval, until ctx ends. Only the head
// sweeps: the deletes are ordinary updates that every replica applies.
func (r *Replica) RunExpirySweeper(ctx context.Context, interval time.Duration, batch int) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var after []byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !r.Role().Orders() || !r.leaseValid() || r.Err() != nil {
			continue
		}
		after = r.sweepOnce(after, batch)
	}
}

func (r *Replica) sweepOnce(after []byte, batch int) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.Role().Orders() {
		return after
	}
	r.env.nowMillis = r.opts.Now().UnixMilli()
	u, next, err := r.sm.PrepareExpireSweep(after, batch, &r.env)
	if err != nil || u == nil {
		return next
	}
	seq, err := r.core.Propose(u)
	if err != nil {
		return after // window full or role lost: try the same keys later
	}
	if _, err := r.sm.Apply(seq, u, nil); err != nil {
		r.fail(fmt.Errorf("%w: %w", ErrStorage, err)) // takes no lock of ours
		return nil
	}
	r.headApplied = seq
	r.kickLoop()
	return next
}
