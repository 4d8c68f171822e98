// Package replicatest runs a group of real replica runtimes in one
// process: each replica.Replica gets a store (in memory unless the test
// builds its own, such as Pebble on a failing disk), a link to the
// others through transport/memnet, a lease the test switches off, and a
// RESP server on 127.0.0.1 so that forwarding and lockstep.req work end
// to end. The coordinator is the test itself: it decides each
// configuration and hands it to the replicas that should hear of it, so
// a test can stage exactly the failover, partition or lapsed lease it
// wants in milliseconds, where process-level tests need seconds.
//
// It is support code for tests and does not import package testing:
// every function reports an error for the test to judge.
package replicatest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/dedup"
	"github.com/lockstep/lockstep/kv"
	"github.com/lockstep/lockstep/replica"
	"github.com/lockstep/lockstep/server"
	"github.com/lockstep/lockstep/storage"
	"github.com/lockstep/lockstep/transport/memnet"
)

// Errors the harness reports, wrapped with %w.
var (
	// ErrTimeout: a condition waited for did not hold before the context
	// ended.
	ErrTimeout = errors.New("lockstep: replicatest condition not reached")
	// ErrUnknownNode: no replica of that name is in the cluster.
	ErrUnknownNode = errors.New("lockstep: replicatest unknown node")
	// ErrStart: a replica or its server could not be started.
	ErrStart = errors.New("lockstep: replicatest start failed")
)

// Options describe a cluster; zero fields take the defaults.
type Options struct {
	// Protocol is replica.ProtocolChain (the default),
	// ProtocolPrimaryBackup or ProtocolCheckpoint.
	Protocol string
	// Names are the replicas, in the order of the first configuration
	// (head or primary first). Default r1, r2, r3.
	Names []string
	// Seed drives the harness's own randomness (incarnations).
	Seed uint64
	// Tick is the replicas' core tick (default 5ms: retransmissions and
	// handshakes come quickly in tests).
	Tick time.Duration
	// WaitTimeout bounds a write's wait for commit (default 5s), and
	// ForwardBudget a forwarded request's retries (default 100ms).
	WaitTimeout   time.Duration
	ForwardBudget time.Duration
	// CheckpointInterval is the checkpoint protocol's epoch (default 5ms).
	CheckpointInterval time.Duration
	Logger             *slog.Logger
	// NewStore builds the store of the replica called name (default: an
	// in-memory one). A durable store (Durable() true) makes the replica
	// sync it before it sends or acknowledges anything, as a node run
	// with --fsync always does. The cluster closes the stores.
	NewStore func(name string) (storage.Store, error)
}

func (o *Options) defaults() {
	if o.Protocol == "" {
		o.Protocol = replica.ProtocolChain
	}
	if len(o.Names) == 0 {
		o.Names = []string{"r1", "r2", "r3"}
	}
	if o.Tick <= 0 {
		o.Tick = 5 * time.Millisecond
	}
	if o.WaitTimeout <= 0 {
		o.WaitTimeout = 5 * time.Second
	}
	if o.ForwardBudget <= 0 {
		o.ForwardBudget = 100 * time.Millisecond
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = 5 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.NewStore == nil {
		o.NewStore = func(string) (storage.Store, error) { return storage.NewMemory(), nil }
	}
}

// Lease is a coordinator lease the test controls: valid until Lapse,
// as a node's lease is until it is cut off from the coordinator for a
// TTL. Safe for concurrent use.
type Lease struct{ lapsed atomic.Bool }

// Valid implements replica.Lease.
func (l *Lease) Valid() bool { return !l.lapsed.Load() }

// Lapse makes the lease invalid; Renew makes it valid again.
func (l *Lease) Lapse() { l.lapsed.Store(true) }

// Renew undoes Lapse.
func (l *Lease) Renew() { l.lapsed.Store(false) }

// Node is one replica of the cluster and what it was given.
type Node struct {
	Name        string
	Incarnation string
	Replica     *replica.Replica
	Lease       *Lease
	// Addr is the client address of its RESP server.
	Addr string

	store  storage.Store
	server *server.Server
	serve  chan error
}

// Cluster is a group of replicas on one in-memory network, with the
// test as coordinator.
type Cluster struct {
	// Net is the network between the replicas: cut links or isolate
	// nodes through it.
	Net *memnet.Network

	opts   Options
	nodes  []*Node
	cancel context.CancelFunc
	runs   sync.WaitGroup
	closed sync.Once

	mu  sync.Mutex
	cfg coord.Config // the last configuration handed out
}

// Start builds and runs the replicas. They hold no configuration yet:
// the test hands out the first with Configure.
func Start(opts Options) (*Cluster, error) {
	opts.defaults()
	rnd := rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x5eed))
	ctx, cancel := context.WithCancel(context.Background())
	c := &Cluster{Net: memnet.New(0), opts: opts, cancel: cancel}
	for _, name := range opts.Names {
		n, err := c.newNode(name, fmt.Sprintf("%016x", rnd.Uint64()))
		if err != nil {
			c.Close()
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	infos := make([]coord.NodeInfo, len(c.nodes))
	for i, n := range c.nodes {
		infos[i] = coord.NodeInfo{Name: n.Name, Incarnation: n.Incarnation, ClientAddr: n.Addr, State: coord.StateServing}
	}
	for _, n := range c.nodes {
		n.Replica.SetNodes(infos)
		c.runs.Add(1)
		go func() {
			defer c.runs.Done()
			n.Replica.Run(ctx)
		}()
	}
	return c, nil
}

// newNode wires one replica as cmd/lockstep does, with the in-memory
// network, a test lease and a RESP server on a port the OS chose.
func (c *Cluster) newNode(name, inc string) (*Node, error) {
	st, err := c.opts.NewStore(name)
	if err != nil {
		return nil, fmt.Errorf("%w: store %s: %w", ErrStart, name, err)
	}
	n, err := c.wire(name, inc, st)
	if err != nil {
		return nil, errors.Join(err, st.Close())
	}
	return n, nil
}

// wire builds the replica and the server of a node over its store.
func (c *Cluster) wire(name, inc string, st storage.Store) (*Node, error) {
	machine, err := dedup.Wrap(kv.New(st, kv.Options{}), 0)
	if err != nil {
		return nil, fmt.Errorf("%w: state machine %s: %w", ErrStart, name, err)
	}
	r, err := replica.New(replica.Options{
		Name: name, Incarnation: inc, Machine: machine, Store: st,
		Protocol: c.opts.Protocol, Tick: c.opts.Tick, WaitTimeout: c.opts.WaitTimeout,
		ForwardBudget:  c.opts.ForwardBudget,
		SyncBeforeSend: st.Durable(),
		Core:           replica.CoreOptions{CheckpointInterval: c.opts.CheckpointInterval},
		Logger:         c.opts.Logger.With("node", name),
		// What Prepare records (random ids) follows the seed too.
		Rand: rand.New(rand.NewPCG(c.opts.Seed, uint64(len(c.nodes)))),
	})
	if err != nil {
		return nil, fmt.Errorf("%w: replica %s: %w", ErrStart, name, err)
	}
	n := &Node{Name: name, Incarnation: inc, Replica: r, Lease: &Lease{}, store: st}
	ep := c.Net.Add(name, r)
	r.Attach(ep, ep, n.Lease)
	if n.server, err = server.New(server.Config{Backend: r, Logger: c.opts.Logger.With("node", name, "component", "server")}); err != nil {
		return nil, fmt.Errorf("%w: server %s: %w", ErrStart, name, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("%w: listen for %s: %w", ErrStart, name, err)
	}
	n.Addr = ln.Addr().String()
	n.serve = make(chan error, 1)
	go func() { n.serve <- n.server.Serve(ln) }()
	return n, nil
}

// Close stops the servers, the replicas' run loops and the network,
// waits for their goroutines and closes the stores. Only the first call
// does anything, so a test may close the cluster to inspect its stores
// and still leave Close to its cleanup.
func (c *Cluster) Close() { c.closed.Do(c.close) }

func (c *Cluster) close() {
	// Every request a test made has been answered by now; connections
	// still open are the forwarders' idle ones, and a graceful close
	// would linger on each for half a second.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	var stops sync.WaitGroup
	for _, n := range c.nodes {
		stops.Go(func() {
			_ = n.server.Shutdown(ctx)
			<-n.serve
		})
	}
	stops.Wait()
	cancel()
	c.cancel()
	c.runs.Wait()
	c.Net.Close()
	for _, n := range c.nodes {
		_ = n.store.Close()
	}
}

// Store is the replica's store, for a test that checks what it holds.
func (n *Node) Store() storage.Store { return n.store }

// Node returns the replica called name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Nodes returns every replica, in Options.Names order.
func (c *Cluster) Nodes() []*Node { return append([]*Node(nil), c.nodes...) }

// Config returns the last configuration Configure handed out.
func (c *Cluster) Config() coord.Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg
}
