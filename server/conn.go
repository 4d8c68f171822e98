package server

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/lockstep/lockstep/internal/rawio"
	"github.com/lockstep/lockstep/resp"
)

const (
	readChunk = 16 << 10
	// flushAt bounds the replies buffered for one pipeline before they are
	// written, so a long pipeline of large replies cannot grow memory
	// without bound.
	flushAt = 64 << 10
)

// conn is one client connection and its session state.
type conn struct {
	srv    *Server
	nc     net.Conn
	rw     net.Conn // nc wrapped for reads and writes as raw system calls where possible
	id     int64
	parser *resp.Parser
	ctx    context.Context
	cancel context.CancelFunc

	in       []byte // unparsed input is in[r:w]
	r, w     int
	out      []byte
	gate     uint64 // highest gate among the replies in out
	lower    []byte // scratch for lower-casing command names
	authed   bool
	name     atomic.Pointer[string]
	quit     bool
	created  time.Time
	draining atomic.Bool

	// A reply handed to the backend at flush, to be written when its gate
	// commits (see deliver). notifier is nil when the backend or the
	// connection cannot do that; then flush waits on this goroutine.
	notifier    CommitNotifier
	inflight    bool
	delivered   chan error // the outcome of the handed-over reply
	deliverFn   func(error)
	undelivered atomic.Bool // a handed-over reply failed: reads must end
}

func newConn(s *Server, nc net.Conn) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	rw := rawio.Wrap(nc)
	c := &conn{
		srv:     s,
		nc:      nc,
		rw:      rw,
		id:      s.nextID.Add(1),
		parser:  resp.NewParser(s.cfg.Limits),
		ctx:     ctx,
		cancel:  cancel,
		in:      make([]byte, readChunk),
		authed:  s.cfg.RequirePass == "",
		created: time.Now(),
	}
	if n, ok := s.cfg.Backend.(CommitNotifier); ok && rw != nc {
		// TryWrite needs the raw connection: a plain one would block.
		c.notifier, c.delivered, c.deliverFn = n, make(chan error, 1), c.deliver
	}
	return c
}

// stopReading makes the connection finish what it has read and close: the
// graceful half of Shutdown.
func (c *conn) stopReading() {
	c.draining.Store(true)
	_ = c.nc.SetReadDeadline(time.Now())
}

// abort closes the connection at once, abandoning unsent replies. The
// close runs on a goroutine of its own: Close waits for a read in
// progress to return, and the connection's goroutine handles its
// commands inside its read (rawio.ReadEach), where a write may wait for
// room in the replication window after its context has ended.
func (c *conn) abort() {
	c.cancel()
	go func() { _ = c.nc.Close() }()
}

func (c *conn) serve() {
	defer c.srv.forget(c)
	defer c.cancel()
	defer c.lingerClose()
	defer func() { _ = c.settle() }() // the last reply goes out before the close
	rerr := rawio.ReadEach(c.rw, c.room, c.handleInput)
	if rerr != nil && !isQuietClose(rerr) && !c.draining.Load() {
		c.srv.cfg.Logger.Debug("client read", "id", c.id, "err", rerr)
	}
}

// handleInput takes n more bytes of input: it collects the outcome of the
// replies handed over before, runs every complete command and flushes
// their replies. It runs inside rawio.ReadEach, which then waits for the
// client's next bytes without a read(2) that finds none. A client that
// is reset right after its last bytes is noticed by the write of their
// reply; with only part of a command read there is no reply to write, so
// the next read is made at once (Poll).
func (c *conn) handleInput(n int) rawio.Then {
	c.w += n
	log := c.srv.cfg.Logger
	if err := c.settle(); err != nil {
		log.Debug("client write", "id", c.id, "err", err)
		return rawio.Stop
	}
	err := c.process()
	if ferr := c.flush(true); ferr != nil {
		log.Debug("client write", "id", c.id, "err", ferr)
		return rawio.Stop
	}
	switch {
	case err != nil || c.quit || c.draining.Load() || c.undelivered.Load():
		// A draining connection, or one whose reply failed, stops here
		// even when more input is waiting: its read deadline only ends
		// a wait.
		return rawio.Stop
	case c.r < c.w:
		return rawio.Poll
	}
	return rawio.Wait
}

// room makes space for more input, growing the buffer when a command
// needs more room than is free, arms the idle deadline, and returns the
// free part of the buffer for the next read.
func (c *conn) room() []byte {
	if c.r == c.w {
		c.r, c.w = 0, 0
	} else if c.r > 0 {
		c.w = copy(c.in, c.in[c.r:c.w])
		c.r = 0
	}
	if c.w == len(c.in) {
		// Grow by doubling, never straight to a declared length: a client
		// that announces a 512 MiB argument must send the bytes before the
		// server spends the memory.
		size := 2 * len(c.in)
		if need := c.parser.Need(); need > c.w && need < size {
			size = need
		}
		grown := make([]byte, size)
		copy(grown, c.in[:c.w])
		c.in = grown
	} else if c.w == 0 && len(c.in) > 4*readChunk {
		// A large command has been handled; give its buffer back.
		c.in = make([]byte, readChunk)
	}
	if t := c.srv.cfg.IdleTimeout; t > 0 && !c.draining.Load() {
		_ = c.nc.SetReadDeadline(time.Now().Add(t))
		if c.undelivered.Load() {
			// report's deadline may have come first; ours must not
			// outlive it.
			_ = c.nc.SetReadDeadline(time.Unix(1, 0))
		}
	}
	return c.in[c.w:]
}

// process runs every complete command in the input buffer. A protocol
// error is answered and returned: the connection then closes, since the
// stream can no longer be framed.
func (c *conn) process() error {
	for !c.quit {
		args, n, err := c.parser.Parse(c.in[c.r:c.w])
		if err != nil {
			c.out = resp.AppendError(c.out, protocolErrorLine(err))
			return err
		}
		if n == 0 {
			return nil
		}
		c.r += n
		if len(args) == 0 {
			continue
		}
		c.dispatch(args)
		if len(c.out) >= flushAt {
			if err := c.flush(false); err != nil {
				return err
			}
		}
	}
	return nil
}

// flush writes the buffered replies once they may be released. With
// handOff, replies that wait for a commit are handed to the backend
// instead (see deliver) and flush returns at once: the connection's
// goroutine goes back to reading, and settle collects the outcome before
// the buffer is used again. Without it, or when the backend cannot take
// them, flush waits here.
func (c *conn) flush(handOff bool) error {
	if len(c.out) == 0 {
		return nil
	}
	if gate := c.gate; gate != 0 {
		c.gate = 0
		if handOff && c.notifier != nil {
			if c.notifier.OnCommit(gate, c.deliverFn) {
				c.inflight = true
				return nil
			}
		} else if err := c.srv.cfg.Backend.Wait(c.ctx, gate); err != nil {
			c.out = c.out[:0]
			return err
		}
	}
	_, err := c.rw.Write(c.out)
	c.resetOut()
	return err
}

func (c *conn) resetOut() {
	if cap(c.out) > 4*flushAt {
		c.out = nil
	} else {
		c.out = c.out[:0]
	}
}

// deliver is the backend's outcome for the replies handed over at flush:
// nil once they may go, or why they must not (the connection then
// closes, as after a failed Wait). It runs on the backend's goroutine, the
// one that learned of the commit, so it writes only what the socket takes
// at once; a rest (a reply larger than the socket's buffer, or a client
// that is not reading) is finished by a goroutine of its own.
func (c *conn) deliver(err error) {
	if err == nil {
		var n int
		n, err = rawio.TryWrite(c.rw, c.out)
		if err == nil && n < len(c.out) {
			go func() {
				_, err := c.rw.Write(c.out[n:])
				c.report(err)
			}()
			return
		}
	}
	c.report(err)
}

func (c *conn) report(err error) {
	c.delivered <- err
	if err != nil {
		c.undelivered.Store(true)
		// The connection's goroutine may be waiting for the client to
		// send more; end that read so it sees the error and closes.
		_ = c.nc.SetReadDeadline(time.Unix(1, 0))
	}
}

// settle waits for the outcome of replies handed over at the last flush,
// if any. After an error, or when the connection is aborted, the buffer is
// left alone: deliver may still be reading it.
func (c *conn) settle() error {
	if !c.inflight {
		return nil
	}
	c.inflight = false
	select {
	case err := <-c.delivered:
		if err != nil {
			return err
		}
		c.resetOut()
		return nil
	case <-c.ctx.Done():
		return c.ctx.Err()
	}
}

// lingerClose half-closes the connection and discards what the client is
// still sending (lingerTime at most; at a shutdown, only until it goes
// quiet for lingerIdle) before closing it. Closing a socket with unread input makes
// the kernel send a reset, which can destroy replies the client has not
// read yet: the last error line after a protocol error, or the answers to a
// pipeline cut short by shutdown.
func (c *conn) lingerClose() {
	defer c.nc.Close()
	tc, ok := c.nc.(*net.TCPConn)
	if !ok || c.ctx.Err() != nil {
		return
	}
	if err := tc.CloseWrite(); err != nil {
		return
	}
	// At a shutdown (draining), a pooled client that sends nothing and
	// keeps its end open must not hold the server for the whole
	// lingerTime, during which a node that is leaving its group has not
	// left yet: the drain ends once the client has been quiet for
	// lingerIdle. After a protocol error the client may still be sending
	// a large request, so it gets the whole lingerTime.
	idle := lingerTime
	if c.draining.Load() {
		idle = lingerIdle
	}
	end := time.Now().Add(lingerTime)
	buf := make([]byte, 32<<10)
	for read := 0; read < lingerBytes; {
		deadline := time.Now().Add(idle)
		if end.Before(deadline) {
			deadline = end
		}
		_ = tc.SetReadDeadline(deadline)
		n, err := tc.Read(buf)
		read += n
		if err != nil {
			return
		}
	}
}

// lingerTime bounds lingerClose; a variable so a test can make it long.
var lingerTime = 500 * time.Millisecond

const (
	lingerIdle  = 20 * time.Millisecond
	lingerBytes = 4 << 20
)

func protocolErrorLine(err error) string {
	var pe *resp.ProtocolError
	if errors.As(err, &pe) {
		return "ERR " + pe.Error()
	}
	return "ERR Protocol error: " + err.Error()
}

func isQuietClose(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded)
}
