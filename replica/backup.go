package replica

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/lockstep/lockstep/backup"
	"github.com/lockstep/lockstep/protocol"
	"github.com/lockstep/lockstep/resp"
	"github.com/lockstep/lockstep/statemachine"
)

// Backups. LOCKSTEP.BACKUP streams the group's user data (keys, values,
// absolute expiry times; not the dedup table) as of one commit point:
// one applied seq S, holding every write acknowledged before the request
// arrived and nothing numbered after S. Writes go on meanwhile.
//
// The design is a read of the whole state, answered where and gated as
// any read is, because a read already has the property a backup needs:
// the state it sees is committed and can never be taken back by a
// failover. So the node that answers is the one that answers reads (a
// chain's tail, the primary), while its lease is valid and its core is
// ReadReady, and its snapshot is opened under the replica's lock, so S
// and the state agree. What the bytes wait for follows Status().ReadGate:
//
//   - chain (GateNone): the tail applies an entry only as it commits, so
//     its state at S is committed already; the stream starts at once.
//   - primary-backup (GateApplied): the primary applies a write before
//     its backups have it, so S may hold writes a failover would lose;
//     the stream waits until the commit point reaches S, as a read's
//     reply does.
//   - checkpoint (GateSpeculative): the primary executes speculatively,
//     so its state at S is not committed; the stream waits until a
//     checkpoint covering S is installed on every backup (the commit
//     point reaches S). State at S is then a prefix of the committed
//     history even if S falls inside an epoch.
//
// If the role is lost before S commits, the request is refused with
// TRYAGAIN and nothing is streamed. ServesSnapshot is not the test: a
// chain's middle serves joiners, but its state may hold writes no client
// has been told of. Serving from a checkpoint backup's installed state
// would avoid the wait but needs a second read path for backups only.
//
// Any other node relays: it asks the node that answers reads with HERE
// (which that node never relays further) and copies the stream, retrying
// on TRYAGAIN, as forwarded reads do, until the stream starts. The snapshot
// is a storage view, so the scan runs outside the lock and the stream is
// written as it is read: a large state is never held in memory.

// Streams reports whether name is a command this replica streams (see
// server.Streamer): LOCKSTEP.BACKUP.
func (r *Replica) Streams(name string) bool { return name == backup.Command }

// Stream answers LOCKSTEP.BACKUP [HERE] by writing a backup stream (see
// package backup) to w, from this replica or relayed from the one that
// answers reads.
func (r *Replica) Stream(ctx context.Context, args [][]byte, w io.Writer) error {
	here := len(args) == 2 && strings.EqualFold(string(args[1]), backup.ArgHere)
	if len(args) > 2 || (len(args) == 2 && !here) {
		return backup.WriteError(w, "ERR syntax error: LOCKSTEP.BACKUP [HERE]")
	}
	if err := r.Err(); err != nil {
		return backup.WriteError(w, "ERR "+err.Error())
	}
	snap, gate, err := r.dataSnapshot()
	switch {
	case errors.Is(err, ErrNotServing) && !here:
		r.stats.forwarded.Add(1)
		return r.relayBackup(ctx, w)
	case errors.Is(err, ErrNotServing):
		return backup.WriteError(w, tryAgain("not the replica that answers reads"))
	case err != nil:
		return backup.WriteError(w, "ERR lockstep: backup: "+err.Error())
	}
	defer snap.Close()
	if gate == 0 { // a chain tail's state: make it durable first (see syncAnswered)
		err = r.syncAnswered(protocol.GateNone)
	}
	if err != nil {
		return backup.WriteError(w, "ERR lockstep: backup: "+err.Error())
	}
	if err := r.Wait(ctx, gate); err != nil {
		return backup.WriteError(w, tryAgain(fmt.Sprintf("backup at seq %d not committed here: %v", gate, err)))
	}
	return r.writeBackup(snap, w)
}

// dataSnapshot opens a snapshot of the user data if this replica answers
// reads now, and returns the gate its contents must wait for: the
// snapshot's seq, unless the state holds only committed writes. It
// returns ErrNotServing when another replica must answer.
func (r *Replica) dataSnapshot() (statemachine.DataSnapshot, uint64, error) {
	if !r.Role().AnswersReads() || !r.leaseValid() {
		return nil, 0, ErrNotServing
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	st := r.core.Status()
	if !st.ReadReady {
		return nil, 0, ErrNotServing
	}
	// The inner machine's snapshot: the dedup table is not user data.
	snap, err := r.sm.Inner().OpenSnapshot()
	if err != nil {
		return nil, 0, fmt.Errorf("open snapshot: %w", err)
	}
	ds, ok := snap.(statemachine.DataSnapshot)
	if !ok {
		_ = snap.Close()
		return nil, 0, fmt.Errorf("the state machine cannot list its data")
	}
	var gate uint64
	if st.ReadGate != protocol.GateNone {
		gate = ds.Seq()
	}
	return ds, gate, nil
}

// writeBackup streams snap, which has committed, to w.
func (r *Replica) writeBackup(snap statemachine.DataSnapshot, w io.Writer) error {
	start := time.Now()
	sw, err := backup.NewStreamWriter(w, backup.StreamHeader{
		Seq: snap.Seq(), Keys: snap.DataKeys(), Cluster: r.opts.Cluster, Group: r.opts.Group, Protocol: r.proto,
	})
	if err != nil {
		return err
	}
	var werr error
	err = snap.ScanData(func(key, value []byte, expireAt int64) bool {
		werr = sw.Add(key, value, expireAt)
		return werr == nil
	})
	if werr != nil {
		return werr
	}
	if err != nil {
		return backup.WriteError(w, "ERR lockstep: backup: "+err.Error())
	}
	if err := sw.End(); err != nil {
		return err
	}
	r.log.Info("backup sent", "seq", snap.Seq(), "keys", snap.DataKeys(), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// relayBackup asks the replica that answers reads for the backup and
// copies its stream to w, trying again while no stream has started, for
// up to the forward budget.
func (r *Replica) relayBackup(ctx context.Context, w io.Writer) error {
	budget := r.opts.ForwardBudget
	if budget <= 0 {
		budget = 15 * time.Second
	}
	deadline := time.Now().Add(budget)
	for attempt := 0; ; attempt++ {
		addr, changed := r.routes.target(false)
		if addr != "" {
			started, err := relayFrom(ctx, addr, w)
			if started {
				return err
			}
			r.log.Debug("backup relay", "to", addr, "err", err)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return backup.WriteError(w, fmt.Sprintf("ERR %v: no replica that answers reads served the backup within %v", ErrNotServing, budget))
		}
		t := time.NewTimer(min(2*time.Millisecond<<min(attempt, 7), 200*time.Millisecond))
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// relayFrom asks addr for the backup with HERE and copies the stream to
// w. It reports whether the stream started: a TRYAGAIN or a failure
// before the first reply relays nothing, so the caller may try again.
func relayFrom(ctx context.Context, addr string, w io.Writer) (bool, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	if _, err := c.Write(resp.AppendCommandStrings(nil, backup.Command, backup.ArgHere)); err != nil {
		return false, err
	}
	br := bufio.NewReaderSize(c, 64<<10)
	first, err := br.ReadSlice('\n')
	if err != nil {
		return false, err
	}
	if bytes.HasPrefix(first, []byte("-TRYAGAIN")) {
		return false, errors.New(string(bytes.TrimSpace(first[1:])))
	}
	if _, err := w.Write(first); err != nil {
		return true, err
	}
	// A stream cut off upstream ends here without its end reply, which
	// the client notices.
	_, err = br.WriteTo(w)
	return true, err
}

// dataDigest answers LOCKSTEP.DATADIGEST [alive-after-ms] if this replica
// answers reads: the data digest (backup.Digest) of a snapshot, with the
// reply gated as a backup's stream is, so it describes committed state.
// It reports false when another replica must answer.
func (r *Replica) dataDigest(args [][]byte, out []byte) ([]byte, uint64, bool, error) {
	var aliveAfter int64
	if len(args) > 2 {
		return resp.AppendError(out, "ERR syntax error: LOCKSTEP.DATADIGEST [alive-after-ms]"), 0, true, nil
	}
	if len(args) == 2 {
		var err error
		if aliveAfter, err = strconv.ParseInt(string(args[1]), 10, 64); err != nil || aliveAfter < 0 {
			return resp.AppendError(out, "ERR value is not an integer or out of range"), 0, true, nil
		}
	}
	snap, gate, err := r.dataSnapshot()
	if errors.Is(err, ErrNotServing) {
		return out, 0, false, nil
	}
	if err != nil {
		return out, 0, true, err
	}
	defer snap.Close()
	d := backup.NewDigest(aliveAfter)
	err = snap.ScanData(func(key, value []byte, expireAt int64) bool {
		d.Add(key, value, expireAt)
		return true
	})
	if err != nil {
		return out, 0, true, err
	}
	return resp.AppendBulkString(out, backup.FormatDataDigest(snap.Seq(), d)), gate, true, nil
}
