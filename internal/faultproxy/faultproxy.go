// Package faultproxy is a RESP-aware TCP proxy that makes the network between
// Redis clients and one server unreliable, for tests.
//
// A client's retry logic is only tested if requests and replies really get
// lost. Losing bytes at random would mostly produce garbled streams, which
// tests nothing interesting; this proxy loses whole requests and whole
// replies, at the boundaries a client can observe, and then closes the
// client's connection, as a broken link would:
//
//   - a dropped request never reaches the server, so the command did not run;
//   - a dropped reply is discarded after the server processed the request,
//     so the command ran but the client cannot know it.
//
// The second case is the one that exactly-once machinery must survive.
//
// Each client connection gets its own server connection, and the proxy
// forwards one request at a time on it: it sends the request, reads the
// whole reply, passes it back, then takes the next request, so pipelined
// requests are handled in order. The proxy therefore assumes one reply per
// request: it does not support SUBSCRIBE, MONITOR or other push modes. It
// speaks RESP2 only, and answers HELLO for any other protocol version with
// NOPROTO itself, as a RESP2-only server would, so that clients such as
// go-redis fall back to RESP2 even in front of a server that speaks RESP3.
package faultproxy

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
)

// ErrInvalidOptions means Start was given unusable Options.
var ErrInvalidOptions = errors.New("lockstep: invalid fault proxy options")

// dialTimeout bounds connecting to the server for a new client.
const dialTimeout = 5 * time.Second

// Options configures a Proxy.
type Options struct {
	// Target is the server's address. Required.
	Target string
	// DropRequest is the probability (0..1) that a client request is not
	// forwarded; the proxy then closes the client connection, so the
	// client sees an error and must retry.
	DropRequest float64
	// DropReply is the probability (0..1) that the server's reply to a
	// forwarded request is discarded after the server processed it; the
	// proxy then closes the client connection.
	DropReply float64
	// Delay holds each request back before it is forwarded, plus a uniform
	// random extra in [0, Jitter).
	Delay, Jitter time.Duration
	// Seed seeds the random source of the drop and jitter decisions; 0
	// picks one, which Seed reports and Start logs.
	Seed uint64
	// Logger receives the seed and connection events; nil discards them.
	Logger *slog.Logger
}

func (o Options) validate() error {
	switch {
	case o.Target == "":
		return fmt.Errorf("%w: Target is empty", ErrInvalidOptions)
	case !(o.DropRequest >= 0 && o.DropRequest <= 1) || !(o.DropReply >= 0 && o.DropReply <= 1):
		return fmt.Errorf("%w: drop probabilities must be in [0, 1]", ErrInvalidOptions)
	case o.Delay < 0 || o.Jitter < 0:
		return fmt.Errorf("%w: negative Delay or Jitter", ErrInvalidOptions)
	}
	return nil
}

// Stats counts what a Proxy did with the requests it received.
type Stats struct {
	Forwarded       uint64 // requests sent to the server, including those whose reply was dropped
	RequestsDropped uint64 // requests never sent to the server
	RepliesDropped  uint64 // replies discarded after the server processed the request
}

// Proxy is a running fault proxy. Its methods are safe for concurrent use.
type Proxy struct {
	opts   Options
	log    *slog.Logger
	ln     net.Listener
	ctx    context.Context // cancelled by Close or by Start's context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	rngMu sync.Mutex
	rng   *rand.Rand

	mu     sync.Mutex
	target string
	closed bool
	conns  map[net.Conn]struct{} // every open connection, so shutdown can end them

	forwarded, requestsDropped, repliesDropped atomic.Uint64
}

// Start listens on a free loopback port and proxies each connection to
// opts.Target. The proxy runs until Close is called or ctx is done; either
// way Close releases it. It returns an error wrapping ErrInvalidOptions for
// bad Options, or the listen error.
func Start(ctx context.Context, opts Options) (*Proxy, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	for opts.Seed == 0 {
		opts.Seed = rand.Uint64()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("lockstep: fault proxy listen: %w", err)
	}
	p := &Proxy{
		opts:   opts,
		log:    opts.Logger.With("proxy", ln.Addr().String()),
		ln:     ln,
		rng:    rand.New(rand.NewPCG(opts.Seed, opts.Seed)),
		target: opts.Target,
		conns:  make(map[net.Conn]struct{}),
	}
	p.ctx, p.cancel = context.WithCancel(ctx)
	p.log.Info("faultproxy: started", "target", opts.Target, "drop_request", opts.DropRequest,
		"drop_reply", opts.DropReply, "delay", opts.Delay, "jitter", opts.Jitter, "seed", opts.Seed)
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		<-p.ctx.Done()
		p.shutdown()
	}()
	go p.acceptLoop()
	return p, nil
}

// Addr returns the address clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Seed returns the seed of the fault decisions, the one picked if
// Options.Seed was 0.
func (p *Proxy) Seed() uint64 { return p.opts.Seed }

// SetTarget points connections accepted from now on at addr, for when the
// server moves (a failover, a restart on a new port). Connections already
// open stay with the old server.
func (p *Proxy) SetTarget(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = addr
}

func (p *Proxy) currentTarget() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.target
}

// Stats returns the request counters; the fields are read one by one.
func (p *Proxy) Stats() Stats {
	return Stats{
		Forwarded:       p.forwarded.Load(),
		RequestsDropped: p.requestsDropped.Load(),
		RepliesDropped:  p.repliesDropped.Load(),
	}
}

// Close stops listening, closes every connection and waits for the proxy's
// goroutines to exit. Later calls do nothing.
func (p *Proxy) Close() error {
	p.cancel()
	p.wg.Wait()
	return nil
}

// shutdown closes the listener and every connection, unblocking the
// goroutines so that Close can wait for them.
func (p *Proxy) shutdown() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	p.ln.Close()
	for c := range conns {
		c.Close()
	}
}

// track registers conn so that shutdown closes it. It returns false, after
// closing conn, once the proxy is shutting down.
func (p *Proxy) track(conn net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		conn.Close()
		return false
	}
	p.conns[conn] = struct{}{}
	return true
}

// release unregisters and closes conn.
func (p *Proxy) release(conn net.Conn) {
	p.mu.Lock()
	delete(p.conns, conn) // a no-op on the nil map after shutdown
	p.mu.Unlock()
	conn.Close()
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			if p.ctx.Err() == nil {
				p.log.Error("faultproxy: accept failed, no longer proxying", "err", err)
			}
			return
		}
		if !p.track(conn) {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(conn)
		}()
	}
}

// verdict is the fate of one request.
type verdict struct {
	dropRequest bool
	dropReply   bool
	delay       time.Duration
}

// decide draws the fate of the next request.
func (p *Proxy) decide() verdict {
	p.rngMu.Lock()
	defer p.rngMu.Unlock()
	o := &p.opts
	v := verdict{delay: o.Delay}
	if o.DropRequest > 0 && p.rng.Float64() < o.DropRequest {
		v.dropRequest = true
		return v
	}
	if o.Jitter > 0 {
		v.delay += time.Duration(p.rng.Int64N(int64(o.Jitter)))
	}
	v.dropReply = o.DropReply > 0 && p.rng.Float64() < o.DropReply
	return v
}
