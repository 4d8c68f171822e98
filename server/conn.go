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
	rw     io.ReadWriter // nc's reads and writes, as raw system calls where possible
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
}

func newConn(s *Server, nc net.Conn) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		srv:     s,
		nc:      nc,
		rw:      rawio.Wrap(nc),
		id:      s.nextID.Add(1),
		parser:  resp.NewParser(s.cfg.Limits),
		ctx:     ctx,
		cancel:  cancel,
		in:      make([]byte, readChunk),
		authed:  s.cfg.RequirePass == "",
		created: time.Now(),
	}
	return c
}

// stopReading makes the connection finish what it has read and close: the
// graceful half of Shutdown.
func (c *conn) stopReading() {
	c.draining.Store(true)
	_ = c.nc.SetReadDeadline(time.Now())
}

// abort closes the connection at once, abandoning unsent replies.
func (c *conn) abort() {
	c.cancel()
	_ = c.nc.Close()
}

func (c *conn) serve() {
	defer c.srv.forget(c)
	defer c.cancel()
	defer c.lingerClose()
	log := c.srv.cfg.Logger
	for {
		if err := c.fill(); err != nil {
			if !isQuietClose(err) && !c.draining.Load() {
				log.Debug("client read", "id", c.id, "err", err)
			}
			return
		}
		err := c.process()
		if ferr := c.flush(); ferr != nil {
			log.Debug("client write", "id", c.id, "err", ferr)
			return
		}
		if err != nil || c.quit {
			return
		}
	}
}

// fill reads more input, growing the buffer when a command needs more
// room than is free.
func (c *conn) fill() error {
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
	}
	n, err := c.rw.Read(c.in[c.w:])
	c.w += n
	if n > 0 {
		return nil
	}
	return err
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
			if err := c.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// flush waits until every buffered reply may be released, then writes them.
func (c *conn) flush() error {
	if len(c.out) == 0 {
		return nil
	}
	if c.gate != 0 {
		if err := c.srv.cfg.Backend.Wait(c.ctx, c.gate); err != nil {
			c.out = c.out[:0]
			return err
		}
		c.gate = 0
	}
	_, err := c.rw.Write(c.out)
	if cap(c.out) > 4*flushAt {
		c.out = nil
	} else {
		c.out = c.out[:0]
	}
	return err
}

// lingerClose half-closes the connection and discards what the client is
// still sending before closing it. Closing a socket with unread input makes
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
	_ = tc.SetReadDeadline(time.Now().Add(lingerTime))
	_, _ = io.Copy(io.Discard, io.LimitReader(tc, lingerBytes))
}

const (
	lingerTime  = 500 * time.Millisecond
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
