// Package kv is lockstep's Redis-compatible string store, written as a
// statemachine.StateMachine over a storage.Store.
//
// Writes are split in two. Prepare runs once, on the replica that orders
// writes: it reads the current state at the Env's time and turns the command
// into an Update holding plain storage operations (set key to a value with an
// absolute expiry, delete key, clear everything) and the finished RESP reply.
// Apply runs on every replica and only replays those operations, so replicas
// never consult their own clocks and cannot diverge. Expired keys are treated
// as absent everywhere and deleted lazily: a Prepare that meets one adds a
// delete to its Update.
package kv

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"

	"github.com/lockstep/lockstep/resp"
	"github.com/lockstep/lockstep/statemachine"
	"github.com/lockstep/lockstep/storage"
)

// DefaultMaxCursors bounds the SCAN cursor table when Options.MaxCursors is
// zero. Each entry holds one key, so the table stays small even when full.
const DefaultMaxCursors = 16384

// Options tunes a Machine. The zero value is ready to use.
type Options struct {
	// Rand draws SCAN cursor numbers. Nil means a generator seeded from the
	// runtime's random source; tests pass a seeded one. The Machine guards it
	// with its own lock, so it must not be shared.
	Rand *rand.Rand
	// MaxCursors bounds the SCAN cursor table; the oldest cursor is dropped
	// when it is full. Zero means DefaultMaxCursors.
	MaxCursors int
}

// Machine is the KV state machine. Its methods follow the concurrency
// contract of statemachine.StateMachine.
type Machine struct {
	store storage.Store
	cmds  []statemachine.Command
	specs map[string]*spec

	// prepMu guards scratch. The runtime already serializes Prepare; the
	// lock costs little and keeps a misuse from corrupting updates.
	prepMu  sync.Mutex
	scratch prep

	// applyMu guards applyBuf, the Batch every Apply reuses: the runtime
	// serializes Apply, and no Store keeps a Batch or its Ops slice (only
	// the keys and values in it), so each write need not allocate one.
	applyMu  sync.Mutex
	applyBuf storage.Batch

	cursors *cursorTable
	dirty   dirtySet
}

var _ statemachine.StateMachine = (*Machine)(nil)

// New returns a Machine that keeps its state in store.
func New(store storage.Store, opts Options) *Machine {
	if opts.MaxCursors <= 0 {
		opts.MaxCursors = DefaultMaxCursors
	}
	if opts.Rand == nil {
		opts.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	specs := commandSpecs()
	m := &Machine{
		store:   store,
		specs:   make(map[string]*spec, len(specs)),
		cmds:    make([]statemachine.Command, 0, len(specs)),
		cursors: newCursorTable(opts.Rand, opts.MaxCursors),
	}
	for i := range specs {
		m.specs[specs[i].cmd.Name] = &specs[i]
		m.cmds = append(m.cmds, specs[i].cmd)
	}
	return m
}

// Commands lists every command the machine accepts. The caller may keep but
// must not modify the slice.
func (m *Machine) Commands() []statemachine.Command { return m.cmds }

// Lookup finds a command by name. It also accepts names in any case, since
// the cost is only paid by callers that did not lower-case first.
func (m *Machine) Lookup(name string) (statemachine.Command, bool) {
	sp, ok := m.specs[name]
	if !ok {
		sp, ok = m.specs[strings.ToLower(name)]
	}
	if !ok {
		return statemachine.Command{}, false
	}
	return sp.cmd, true
}

// AppliedSeq is the sequence number of the last applied Update.
func (m *Machine) AppliedSeq() uint64 { return m.store.AppliedSeq() }

// Keyspace returns the number of keys and of keys with an expiry, for INFO.
// Like Redis's, the counts include expired keys not yet deleted.
func (m *Machine) Keyspace() (keys, expires int64) {
	st := m.store.Stats()
	return st.Keys, st.Expires
}

// Prepare turns a write command into an Update. A read command is accepted
// too and yields an Update that changes nothing but carries the reply, which
// lets a runtime order a read with the writes around it.
func (m *Machine) Prepare(args [][]byte, env statemachine.Env) (statemachine.Update, error) {
	return m.PrepareAppend(nil, args, env)
}

// PrepareAppend is Prepare with the Update appended to dst, for a wrapper
// that puts a header in front of it (dedup) without copying it again.
func (m *Machine) PrepareAppend(dst []byte, args [][]byte, env statemachine.Env) (statemachine.Update, error) {
	m.prepMu.Lock()
	defer m.prepMu.Unlock()
	p := &m.scratch
	p.reset(env.NowMillis())
	defer p.release()

	sp, msg := m.resolve(args)
	switch {
	case sp == nil:
		p.reply = resp.AppendError(p.reply, msg)
	case sp.write != nil:
		if err := sp.write(m, p, args); err != nil {
			return nil, err
		}
		if err := m.hint(p.ops); err != nil {
			return nil, err
		}
	default:
		var err error
		if p.reply, err = sp.read(m, args, p.now, p.reply); err != nil {
			return nil, err
		}
	}
	return appendUpdate(dst, p.reply, p.ops), nil
}

// hint records in each op what its key holds now (storage.Op.Prev), as
// the update's Apply would otherwise read it at every replica: the node
// that prepares an update reads each key once, and the replicas, which
// apply the same history, take its word. Prepare runs on the state the
// update is applied to next, so the hints hold there; a key that appears
// twice is counted by the batch's own earlier op, which the store prefers
// to the hint.
func (m *Machine) hint(ops []storage.Op) error {
	for i := range ops {
		op := &ops[i]
		if op.Kind != storage.OpSet && op.Kind != storage.OpDelete {
			continue
		}
		e, found, err := m.store.Get(op.Key)
		if err != nil {
			return fmt.Errorf("kv: prepare: %w", err)
		}
		op.Prev = storage.HintOf(e, found)
	}
	return nil
}

// Apply applies u as one storage batch numbered seq and appends its reply.
func (m *Machine) Apply(seq uint64, u statemachine.Update, out []byte) ([]byte, error) {
	return m.ApplyWithMeta(seq, u, out, nil)
}

// ApplyWithMeta is Apply with metadata ops in the update's own storage
// batch. A wrapper that keeps state of its own in the store (dedup's table
// of replies) writes it this way, so a crash keeps an update and what the
// wrapper recorded about it together or neither. meta, unless nil, is
// called with the update's reply before the batch is applied and returns
// the ops to add, of metadata kinds only (storage.OpKind.IsMeta). The reply
// aliases u, so meta copies what it keeps; the store may keep the slices of
// the ops meta returns.
func (m *Machine) ApplyWithMeta(seq uint64, u statemachine.Update, out []byte, meta func(reply []byte) []storage.Op) ([]byte, error) {
	reply, n, body, err := decodeHeader(u)
	if err != nil {
		return out, err
	}
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	b := &m.applyBuf
	b.Ops, b.Seq = slices.Grow(b.Ops[:0], n)[:n], seq
	defer releaseOps(b)
	if err := decodeOps(u[0], body, b.Ops); err != nil {
		return out, err
	}
	detachOps(b.Ops, len(u))
	if meta != nil {
		extra := meta(reply)
		if err := checkMeta(extra); err != nil {
			return out, fmt.Errorf("kv: apply update %d: %w", seq, err)
		}
		b.Ops = append(b.Ops, extra...)
	}
	if err := m.store.Apply(b); err != nil {
		return out, fmt.Errorf("kv: apply update %d: %w", seq, err)
	}
	m.dirty.record(seq, b.Ops[:n])
	return append(out, reply...), nil
}

// checkMeta rejects a wrapper's op that would change user keys: those
// change only through Updates, which every replica applies alike.
func checkMeta(ops []storage.Op) error {
	for i := range ops {
		if !ops[i].Kind.IsMeta() {
			return fmt.Errorf("%w: metadata op %d has kind %d", storage.ErrBadOp, i, ops[i].Kind)
		}
	}
	return nil
}

// Store returns the store the machine keeps its state in, for a wrapper
// that keeps state of its own in the store's metadata namespace: dedup
// reads its table back from it when it starts over a kept store.
func (m *Machine) Store() storage.Store { return m.store }

// Read answers a read-only command from the current state.
func (m *Machine) Read(args [][]byte, nowMillis int64, out []byte) ([]byte, error) {
	sp, msg := m.resolve(args)
	switch {
	case sp == nil:
		return resp.AppendError(out, msg), nil
	case sp.read == nil:
		return resp.AppendError(out, "ERR write command '"+sp.cmd.Name+"' sent to the read path"), nil
	}
	return sp.read(m, args, nowMillis, out)
}

// resolve finds the spec for args and checks its arity. On failure it
// returns the error text to reply with; the server normally catches these
// first, but the machine must never index past the end of args.
func (m *Machine) resolve(args [][]byte) (*spec, string) {
	if len(args) == 0 {
		return nil, "ERR empty command"
	}
	sp := m.find(args[0])
	if sp == nil {
		return nil, unknownCommand(args)
	}
	a := sp.cmd.Arity
	if (a > 0 && len(args) != a) || (a < 0 && len(args) < -a) {
		return nil, arityError(sp.cmd.Name)
	}
	return sp, ""
}

// maxNameLen is the longest command name find lower-cases on the stack.
const maxNameLen = 16

// find looks name up case-insensitively without allocating: the lower-case
// copy lives on the stack and the map lookup converts it without copying.
func (m *Machine) find(name []byte) *spec {
	if len(name) > maxNameLen {
		return nil
	}
	var buf [maxNameLen]byte
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return m.specs[string(buf[:len(name)])]
}

func arityError(name string) string { return resp.ArityError(name) }

func unknownCommand(args [][]byte) string { return resp.UnknownCommandError(args) }
