// Package dedup makes retried requests apply once. It wraps a state
// machine: a request tagged with (client id, request number) is prepared
// only the first time; a retry of the same number gets the reply recorded
// when it was applied, with the sequence number it must wait for. The table
// of last replies is part of the replicated state (it travels in every
// update and in snapshots), so a request retried after a failover is
// answered by the new head instead of being applied twice.
package dedup

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/lockstep/lockstep/statemachine"
	"github.com/lockstep/lockstep/storage"
)

// Update tags: an untagged update or one carrying a request id.
const (
	tagPlain  = 0xD0
	tagTagged = 0xD1
	tagDelta  = 0xD2 // a checkpoint's delta: table records, then the inner delta
)

// DefaultMaxClients bounds the table. When it is full, Apply evicts the
// client whose last request is oldest, which every replica does alike
// because it depends only on sequence numbers.
const DefaultMaxClients = 65536

// ErrTooOld means a retry arrived for a request older than the last one
// recorded for its client: its reply is gone.
var ErrTooOld = errors.New("lockstep: request number older than the last applied for this client")

type record struct {
	num   uint64
	seq   uint64
	reply []byte
}

// Machine is a deduplicating StateMachine around an inner one. It follows
// the statemachine concurrency contract; its table has its own lock so
// Lookup may run beside Apply.
type Machine struct {
	statemachine.StateMachine
	max int
	// durable is the inner machine when it can keep the table in its
	// store, nil when the table lives in memory only.
	durable durableInner

	mu    sync.Mutex
	table map[string]record
	// dirty, while tracking (see TrackChanges), holds the clients whose
	// records changed since the last TakeDelta.
	dirty map[string]bool
}

// Wrap returns inner with deduplication; maxClients <= 0 means the default.
// When inner keeps its state in a store (kv.Machine), the table is kept
// there too and read back now, so a machine wrapped over a store that
// already holds data knows every request that data includes. It fails only
// if that read fails.
func Wrap(inner statemachine.StateMachine, maxClients int) (*Machine, error) {
	if maxClients <= 0 {
		maxClients = DefaultMaxClients
	}
	m := &Machine{StateMachine: inner, max: maxClients, table: map[string]record{}}
	if d, ok := inner.(durableInner); ok {
		m.durable = d
		if err := m.load(); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Inner returns the wrapped machine.
func (m *Machine) Inner() statemachine.StateMachine { return m.StateMachine }

// Duplicate reports whether (client, num) was already applied. If so it
// returns the recorded reply and the sequence number whose commit releases
// it; err is ErrTooOld when the request predates the recorded one.
func (m *Machine) Duplicate(client string, num uint64) (reply []byte, seq uint64, dup bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.table[client]
	switch {
	case !ok || num > r.num:
		return nil, 0, false, nil
	case num == r.num:
		return r.reply, r.seq, true, nil
	}
	return nil, 0, true, fmt.Errorf("%w: %d < %d", ErrTooOld, num, r.num)
}

// appendPreparer is a machine that can prepare an Update behind a header
// (kv.Machine), which saves copying every write's Update.
type appendPreparer interface {
	PrepareAppend(dst []byte, args [][]byte, env statemachine.Env) (statemachine.Update, error)
}

// Prepare prepares an untagged request.
func (m *Machine) Prepare(args [][]byte, env statemachine.Env) (statemachine.Update, error) {
	return m.prepareBehind([]byte{tagPlain}, args, env)
}

// PrepareTagged prepares a request that carries a client id and number.
// The caller checks Duplicate first.
func (m *Machine) PrepareTagged(client string, num uint64, args [][]byte, env statemachine.Env) (statemachine.Update, error) {
	h := make([]byte, 0, 1+binary.MaxVarintLen64*2+len(client))
	h = append(h, tagTagged)
	h = binary.AppendUvarint(h, uint64(len(client)))
	h = append(h, client...)
	h = binary.AppendUvarint(h, num)
	return m.prepareBehind(h, args, env)
}

// prepareBehind prepares the inner update behind header.
func (m *Machine) prepareBehind(header []byte, args [][]byte, env statemachine.Env) (statemachine.Update, error) {
	if ap, ok := m.StateMachine.(appendPreparer); ok {
		return ap.PrepareAppend(header, args, env)
	}
	u, err := m.StateMachine.Prepare(args, env)
	if err != nil {
		return nil, err
	}
	return append(header, u...), nil
}

// Plain wraps an inner update (an expiry sweep, say) that carries no
// request id.
func Plain(u statemachine.Update) statemachine.Update {
	b := make([]byte, 0, 1+len(u))
	b = append(b, tagPlain)
	return append(b, u...)
}

// Apply applies the inner update and records a tagged request's reply.
func (m *Machine) Apply(seq uint64, u statemachine.Update, out []byte) ([]byte, error) {
	if len(u) > 0 && u[0] == tagDelta {
		return out, m.applyDelta(seq, u[1:])
	}
	client, num, inner, err := decode(u)
	if err != nil {
		return out, err
	}
	if client == "" {
		return m.StateMachine.Apply(seq, inner, out)
	}
	return m.applyTagged(seq, client, num, inner, out)
}

// applyTagged applies a tagged request's inner update and records its
// reply. The client that makes room for a new one is chosen first, so a
// durable table's record and eviction go in the update's own batch.
func (m *Machine) applyTagged(seq uint64, client string, num uint64, inner statemachine.Update, out []byte) ([]byte, error) {
	var evict []string
	m.mu.Lock()
	if len(m.table) >= m.max {
		evict = m.evictionsLocked(map[string]record{client: {num: num, seq: seq}})
	}
	m.mu.Unlock()
	var rec record
	var err error
	if m.durable != nil {
		out, err = m.durable.ApplyWithMeta(seq, inner, out, func(reply []byte) []storage.Op {
			var v []byte
			rec, v = newRecord(num, seq, reply)
			ops := make([]storage.Op, 0, 1+len(evict))
			ops = append(ops, setRecordOp(client, v))
			for _, c := range evict {
				ops = append(ops, deleteRecordOp(c))
			}
			return ops
		})
	} else {
		start := len(out)
		if out, err = m.StateMachine.Apply(seq, inner, out); err == nil {
			rec, _ = newRecord(num, seq, out[start:])
		}
	}
	if err != nil {
		return out, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.putLocked(client, rec)
	for _, c := range evict {
		m.dropLocked(c)
	}
	return out, nil
}

// putLocked records r for client in memory, and dropLocked forgets
// client. A change is marked dirty, so it travels in the next delta (a
// removal as a record with num 0, which tells a backup to forget the
// client).
func (m *Machine) putLocked(client string, r record) {
	m.table[client] = r
	m.markLocked(client)
}

func (m *Machine) dropLocked(client string) {
	delete(m.table, client)
	m.markLocked(client)
}

func (m *Machine) markLocked(client string) {
	if m.dirty != nil {
		m.dirty[client] = true
	}
}

func decode(u statemachine.Update) (client string, num uint64, inner statemachine.Update, err error) {
	if len(u) == 0 {
		return "", 0, nil, fmt.Errorf("%w: empty", statemachine.ErrCorruptUpdate)
	}
	switch u[0] {
	case tagPlain:
		return "", 0, u[1:], nil
	case tagTagged:
	default:
		return "", 0, nil, fmt.Errorf("%w: dedup tag %#x", statemachine.ErrCorruptUpdate, u[0])
	}
	rest := u[1:]
	n, k := binary.Uvarint(rest)
	if k <= 0 || n == 0 || n > uint64(len(rest)-k) {
		return "", 0, nil, fmt.Errorf("%w: dedup client id", statemachine.ErrCorruptUpdate)
	}
	client = string(rest[k : k+int(n)])
	rest = rest[k+int(n):]
	num, k = binary.Uvarint(rest)
	if k <= 0 {
		return "", 0, nil, fmt.Errorf("%w: dedup request number", statemachine.ErrCorruptUpdate)
	}
	return client, num, rest[k:], nil
}

// OpenSnapshot captures the table with the inner state. Both are taken
// under the runtime's lock, so they describe the same sequence number.
func (m *Machine) OpenSnapshot() (statemachine.Snapshot, error) {
	inner, err := m.StateMachine.OpenSnapshot()
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	table := make(map[string]record, len(m.table))
	for c, r := range m.table {
		table[c] = r
	}
	m.mu.Unlock()
	return &snapshot{inner: inner, table: table}, nil
}

type snapshot struct {
	inner statemachine.Snapshot
	table map[string]record
}

func (s *snapshot) Seq() uint64  { return s.inner.Seq() }
func (s *snapshot) Close() error { return s.inner.Close() }

// Write puts the table first (count, then client, number, seq, reply per
// record, in client order so equal states give equal bytes), then the inner
// snapshot.
func (s *snapshot) Write(w io.Writer) error {
	clients := make([]string, 0, len(s.table))
	for c := range s.table {
		clients = append(clients, c)
	}
	sort.Strings(clients)
	b := binary.AppendUvarint(nil, uint64(len(clients)))
	for _, c := range clients {
		r := s.table[c]
		b = binary.AppendUvarint(b, uint64(len(c)))
		b = append(b, c...)
		b = binary.AppendUvarint(b, r.num)
		b = binary.AppendUvarint(b, r.seq)
		b = binary.AppendUvarint(b, uint64(len(r.reply)))
		b = append(b, r.reply...)
	}
	if _, err := w.Write(b); err != nil {
		return err
	}
	return s.inner.Write(w)
}

// Restore reads the table, then hands the rest of the stream to the inner
// machine. A durable table replaces the stored one in the inner machine's
// Replace batch.
func (m *Machine) Restore(r io.Reader) error {
	br := bufio.NewReader(r)
	table, err := readTable(br)
	if err != nil {
		return err
	}
	if m.durable != nil {
		err = m.durable.RestoreWithMeta(br, tableOps(table))
	} else {
		err = m.StateMachine.Restore(br)
	}
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.table = table
	m.mu.Unlock()
	return nil
}

const maxField = 64 << 20

func readTable(br *bufio.Reader) (map[string]record, error) {
	bad := func(what string) error {
		return fmt.Errorf("%w: dedup table %s", statemachine.ErrCorruptSnapshot, what)
	}
	n, err := binary.ReadUvarint(br)
	if err != nil || n > 1<<24 {
		return nil, bad("count")
	}
	field := func() ([]byte, error) {
		l, err := binary.ReadUvarint(br)
		if err != nil || l > maxField {
			return nil, bad("field length")
		}
		b := make([]byte, l)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, bad("field")
		}
		return b, nil
	}
	table := make(map[string]record, min(n, 1024))
	for range n {
		c, err := field()
		if err != nil {
			return nil, err
		}
		num, err1 := binary.ReadUvarint(br)
		seq, err2 := binary.ReadUvarint(br)
		if err1 != nil || err2 != nil {
			return nil, bad("numbers")
		}
		reply, err := field()
		if err != nil {
			return nil, err
		}
		table[string(c)] = record{num: num, seq: seq, reply: reply}
	}
	return table, nil
}

// sweeper is the optional expiry interface of the inner machine (kv).
type sweeper interface {
	PrepareExpireSweep(after []byte, limit int, env statemachine.Env) (statemachine.Update, []byte, error)
}

// PrepareExpireSweep passes the inner machine's expiry sweep through as an
// untagged update, so the runtime's sweeper works on a wrapped machine.
func (m *Machine) PrepareExpireSweep(after []byte, limit int, env statemachine.Env) (statemachine.Update, []byte, error) {
	sw, ok := m.StateMachine.(sweeper)
	if !ok {
		return nil, nil, nil
	}
	u, next, err := sw.PrepareExpireSweep(after, limit, env)
	if err != nil || u == nil {
		return nil, next, err
	}
	return Plain(u), next, nil
}
