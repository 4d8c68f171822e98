package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockstep/lockstep/internal/rawio"
)

// Transport sends messages to peers and receives theirs, and serves and opens
// snapshot streams. All its methods are safe for concurrent use.
type Transport struct {
	cfg    Config
	log    *slog.Logger
	ln     net.Listener
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	stats  counters
	faults *faultInjector // nil unless Config.Faults is set

	// peers maps a peer name to its outbound *peer link. A sync.Map keeps
	// the lookup in Send free of writes to shared memory; entries are
	// added and removed under mu, so that none is added after Close.
	peers sync.Map

	mu      sync.Mutex
	closed  bool
	inbound map[string]*inbound   // the current inbound message connection per peer
	conns   map[net.Conn]struct{} // every open connection, so Close can end them
}

// Stats counts traffic since Listen. Message counts are of payloads; byte
// counts include framing.
type Stats struct {
	MsgsSent      uint64 // messages written to a connection
	BytesSent     uint64
	Writes        uint64 // write calls carrying those messages (one per batch)
	MsgsDropped   uint64 // refused by Send, or discarded on a connection error
	Connects      uint64 // outbound message connections established
	MsgsReceived  uint64
	BytesReceived uint64

	// MsgsFaultDropped counts messages that Config.Faults dropped: Send
	// returned true for them, as for a message lost on the wire.
	MsgsFaultDropped uint64
}

type counters struct {
	msgsSent, bytesSent, writes, msgsDropped, connects atomic.Uint64
	msgsReceived, bytesReceived                        atomic.Uint64
	msgsFaultDropped                                   atomic.Uint64
}

// Listen starts a Transport listening on cfg.Listen. It returns an error
// wrapping ErrInvalidConfig for a bad Config, or the listen error.
func Listen(cfg Config) (*Transport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("lockstep: transport listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		cfg:     cfg,
		log:     cfg.Logger.With("node", cfg.Name),
		ln:      ln,
		ctx:     ctx,
		cancel:  cancel,
		inbound: make(map[string]*inbound),
		conns:   make(map[net.Conn]struct{}),
	}
	if cfg.Faults != nil {
		t.faults = newFaultInjector(cfg.Faults)
		t.logFaults()
	}
	t.wg.Add(1)
	go t.acceptLoop()
	return t, nil
}

// Addr returns the address the Transport listens on, with the port the OS
// picked if Config.Listen asked for port 0. Safe for concurrent use.
func (t *Transport) Addr() string { return t.ln.Addr().String() }

// Stats returns the traffic counters. Safe for concurrent use; the fields are
// read one by one, so they may be mutually inconsistent by a batch.
func (t *Transport) Stats() Stats {
	c := &t.stats
	return Stats{
		MsgsSent:      c.msgsSent.Load(),
		BytesSent:     c.bytesSent.Load(),
		Writes:        c.writes.Load(),
		MsgsDropped:   c.msgsDropped.Load(),
		Connects:      c.connects.Load(),
		MsgsReceived:  c.msgsReceived.Load(),
		BytesReceived: c.bytesReceived.Load(),

		MsgsFaultDropped: c.msgsFaultDropped.Load(),
	}
}

// Drop closes the connections to and from the named peer and discards what is
// queued for it, for when the peer leaves the configuration. A later Send to
// it dials again. Drop does not wait for the peer's goroutines to exit (Close does).
// Safe for concurrent use.
func (t *Transport) Drop(name string) {
	t.mu.Lock()
	p, _ := t.peers.LoadAndDelete(name)
	in := t.inbound[name]
	t.mu.Unlock()
	if p != nil {
		p.(*peer).stop()
	}
	if in != nil {
		in.retire()
	}
}

// Close stops the listener, closes every connection, discards queued messages
// and waits for the Transport's goroutines, including running Handler and
// Snapshot calls, to return. Later calls return nil; Send then returns false
// and OpenStream ErrClosed. Safe for concurrent use.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	conns := t.conns
	t.conns = nil
	t.mu.Unlock()

	t.cancel()
	err := t.ln.Close()
	t.peers.Range(func(name, p any) bool {
		t.peers.Delete(name)
		p.(*peer).stop()
		return true
	})
	for c := range conns {
		c.Close()
	}
	t.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("lockstep: transport close: %w", err)
	}
	return nil
}

// isClosed reports whether Close has begun.
func (t *Transport) isClosed() bool { return t.ctx.Err() != nil }

// track registers conn so that Close closes it. It returns false, after
// closing conn, if the Transport is closed.
func (t *Transport) track(conn net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		conn.Close()
		return false
	}
	t.conns[conn] = struct{}{}
	return true
}

// release unregisters and closes conn.
func (t *Transport) release(conn net.Conn) {
	t.mu.Lock()
	if t.conns != nil {
		delete(t.conns, conn)
	}
	t.mu.Unlock()
	conn.Close()
}

// goroutine runs f on a goroutine that Close waits for, unless the Transport
// is closed, in which case it returns false. Checking closed under the lock
// keeps wg.Add from racing with wg.Wait in Close.
func (t *Transport) goroutine(f func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		f()
	}()
	return true
}

func (t *Transport) acceptLoop() {
	defer t.wg.Done()
	delay := minBackoff
	for {
		conn, err := t.ln.Accept()
		if err != nil {
			if t.isClosed() {
				return
			}
			// Accept fails mostly for lack of file descriptors; waiting a
			// little keeps the loop from spinning until some are freed.
			t.log.Error("transport accept failed", "err", err, "retry_in", delay)
			if !sleepCtx(t.ctx, delay) {
				return
			}
			delay = min(2*delay, time.Second)
			continue
		}
		delay = minBackoff
		conn = rawio.Wrap(conn)
		if !t.track(conn) {
			return
		}
		if !t.goroutine(func() { t.serveConn(conn) }) {
			t.release(conn)
			return
		}
	}
}

// dial connects to the named peer and performs the handshake for kind. The
// returned reader holds anything the acceptor sent after its reply. The
// connection is tracked; the caller must release it.
func (t *Transport) dial(ctx context.Context, name string, kind connKind) (net.Conn, *bufio.Reader, error) {
	addr, ok := t.cfg.Resolve(name)
	if !ok {
		return nil, nil, fmt.Errorf("%w: %q", ErrUnknownPeer, name)
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("lockstep: dial %q at %s: %w", name, addr, err)
	}
	conn = rawio.Wrap(conn)
	if !t.track(conn) {
		return nil, nil, ErrClosed
	}
	// The deadline bounds the handshake; AfterFunc aborts it on cancel.
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	r, err := t.handshake(conn, kind)
	if !stop() || err != nil {
		t.release(conn)
		if err == nil || ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return nil, nil, fmt.Errorf("lockstep: handshake with %q at %s: %w", name, addr, err)
	}
	conn.SetDeadline(time.Time{})
	return conn, r, nil
}

func (t *Transport) handshake(conn net.Conn, kind connKind) (*bufio.Reader, error) {
	msg := appendHello(nil, hello{kind: kind, cluster: t.cfg.ClusterID, name: t.cfg.Name})
	if _, err := conn.Write(msg); err != nil {
		return nil, err
	}
	// A message connection carries nothing back after the reply, so its
	// reader only needs room for the status.
	size := 512
	if kind == kindStream {
		size = readBufSize
	}
	r := bufio.NewReaderSize(conn, size)
	return r, readStatus(r)
}

// sleepCtx waits for d or ctx, reporting whether d elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
