// Package node is the runtime that drives a state machine: it orders
// writes, applies them to storage, and decides when a reply may leave the
// process. It owns the locks, the clock and the disk flushes, so the state
// machine and the protocol cores stay pure.
//
// This file holds the single-replica runtime (a group of one, replication
// off). Replication protocols plug in at the same two points: Write, which
// orders a request and returns the sequence number its reply depends on, and
// Wait, which blocks until replies up to a sequence number may be released.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockstep/lockstep/statemachine"
	"github.com/lockstep/lockstep/storage"
)

// FsyncPolicy says when a write's reply may be released relative to the
// disk flush that makes it durable.
type FsyncPolicy uint8

const (
	// FsyncAlways releases a reply only after the update it depends on is
	// on disk. Concurrent writers share one flush (group commit).
	FsyncAlways FsyncPolicy = iota + 1
	// FsyncNone releases replies at once and leaves flushing to the
	// storage engine; a crash may lose the most recent acknowledged writes.
	FsyncNone
)

// ParseFsyncPolicy reads the --fsync flag's value.
func ParseFsyncPolicy(s string) (FsyncPolicy, error) {
	switch s {
	case "always":
		return FsyncAlways, nil
	case "none":
		return FsyncNone, nil
	}
	return 0, fmt.Errorf("%w: fsync policy %q (want always or none)", ErrBadConfig, s)
}

// String returns the flag spelling of the policy.
func (p FsyncPolicy) String() string {
	switch p {
	case FsyncAlways:
		return "always"
	case FsyncNone:
		return "none"
	}
	return "unknown"
}

// Errors returned by the node, wrapped with %w.
var (
	// ErrBadConfig reports an invalid Config.
	ErrBadConfig = errors.New("lockstep: bad node configuration")
	// ErrFailed means the node hit a storage error and stopped serving:
	// its state may no longer be what its replies promised.
	ErrFailed = errors.New("lockstep: node failed")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("lockstep: node closed")
)

// Config assembles a node from its parts.
type Config struct {
	Machine statemachine.StateMachine
	Store   storage.Store
	Fsync   FsyncPolicy
	// Now returns the wall clock in Unix milliseconds; nil means time.Now.
	Now func() int64
	// Rand is the randomness handed to Prepare; nil means a random seed.
	Rand   *rand.Rand
	Logger *slog.Logger
}

// Node runs one replica with replication off.
//
// Write, Read and Wait are safe for concurrent use by many connections.
type Node struct {
	sm     statemachine.StateMachine
	store  storage.Store
	fsync  FsyncPolicy
	now    func() int64
	log    *slog.Logger
	commit *groupCommit

	// mu orders writes (exclusive) against reads (shared), which the
	// state machine's contract requires.
	mu       sync.RWMutex
	env      env
	failed   atomic.Pointer[error]
	failedCh chan struct{} // closed by the first fail
	closed   atomic.Bool
}

// New builds a node. The store's AppliedSeq is where the sequence resumes.
func New(cfg Config) (*Node, error) {
	if cfg.Machine == nil || cfg.Store == nil {
		return nil, fmt.Errorf("%w: machine and store are required", ErrBadConfig)
	}
	if cfg.Fsync == 0 {
		cfg.Fsync = FsyncAlways
	}
	if !cfg.Store.Durable() {
		// Nothing to flush: gating replies on Sync would only add latency.
		cfg.Fsync = FsyncNone
	}
	if cfg.Now == nil {
		cfg.Now = func() int64 { return time.Now().UnixMilli() }
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	n := &Node{
		sm:    cfg.Machine,
		store: cfg.Store,
		fsync: cfg.Fsync,
		now:   cfg.Now,
		log:   cfg.Logger,
		env:   env{rnd: cfg.Rand},

		failedCh: make(chan struct{}),
	}
	n.commit = newGroupCommit(cfg.Store, cfg.Machine.AppliedSeq())
	return n, nil
}

// Machine returns the state machine the node drives.
func (n *Node) Machine() statemachine.StateMachine { return n.sm }

// Store returns the node's storage.
func (n *Node) Store() storage.Store { return n.store }

// Fsync returns the node's flush policy.
func (n *Node) Fsync() FsyncPolicy { return n.fsync }

// Err reports why the node stopped serving, or nil.
func (n *Node) Err() error {
	if n.closed.Load() {
		return ErrClosed
	}
	if p := n.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// fail records the first fatal error; later calls keep the first.
func (n *Node) fail(err error) error {
	err = fmt.Errorf("%w: %w", ErrFailed, err)
	if n.failed.CompareAndSwap(nil, &err) {
		n.log.Error("node stopped serving", "err", err)
		close(n.failedCh)
	}
	return *n.failed.Load()
}

// Failed is closed when the node stops on a storage error (see Err): the
// process should then exit, loudly, rather than stay up refusing every
// request.
func (n *Node) Failed() <-chan struct{} { return n.failedCh }

// Write orders a write request, applies it, and appends its reply to out.
// The reply must not reach the client before Wait(gate) returns nil.
func (n *Node) Write(args [][]byte, out []byte) ([]byte, uint64, error) {
	if err := n.Err(); err != nil {
		return out, 0, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.env.nowMillis = n.now()
	u, err := n.sm.Prepare(args, &n.env)
	if err != nil {
		return out, 0, n.fail(err)
	}
	seq := n.sm.AppliedSeq() + 1
	out, err = n.sm.Apply(seq, u, out)
	if err != nil {
		return out, 0, n.fail(err)
	}
	n.commit.applied(seq)
	if n.fsync == FsyncNone {
		return out, 0, nil
	}
	return out, seq, nil
}

// Read answers a read request and appends its reply to out. The returned
// gate is the last write the reply may have observed: under FsyncAlways a
// reader must not see a write that a crash could still take back.
func (n *Node) Read(args [][]byte, out []byte) ([]byte, uint64, error) {
	if err := n.Err(); err != nil {
		return out, 0, err
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	out, err := n.sm.Read(args, n.now(), out)
	if err != nil {
		return out, 0, n.fail(err)
	}
	if n.fsync == FsyncNone {
		return out, 0, nil
	}
	return out, n.sm.AppliedSeq(), nil
}

// Wait blocks until replies that depend on writes up to gate may be
// released. A gate of 0 never waits.
func (n *Node) Wait(ctx context.Context, gate uint64) error {
	if gate == 0 || n.commit.isDurable(gate) {
		return nil
	}
	if err := n.commit.wait(ctx, gate); err != nil {
		if ctx.Err() != nil {
			return err
		}
		return n.fail(err)
	}
	return nil
}

// Close flushes and closes the store. Callers stop sending requests first.
func (n *Node) Close() error {
	if !n.closed.CompareAndSwap(false, true) {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.store.Close()
}

// env is the Env handed to Prepare: the clock read once per request and a
// seeded random source. It is only touched under Node.mu.
type env struct {
	nowMillis int64
	rnd       *rand.Rand
}

func (e *env) NowMillis() int64 { return e.nowMillis }
func (e *env) Rand() uint64     { return e.rnd.Uint64() }
