package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// streamChunk is the most data one stream chunk carries.
const streamChunk = 64 << 10

// OpenStream asks the peer named to for a stream, typically a snapshot: it
// dials a dedicated connection, sends req, and returns the response that the
// peer's Config.Snapshot writes.
//
// ctx governs the whole stream, not just its opening: cancelling it aborts a
// Read in progress with an error wrapping ctx's error. Read returns io.EOF
// only after the server's end marker. An error the server reported wraps
// ErrRemote, and a connection lost before the end marker wraps ErrTruncated,
// so a failed transfer is never mistaken for a short one. The caller must
// Close the stream.
//
// OpenStream is safe for concurrent use. A stream's Read is for one goroutine
// at a time; Close may be called from another to abort a Read.
func (t *Transport) OpenStream(ctx context.Context, to string, req []byte) (io.ReadCloser, error) {
	if len(req) > t.cfg.MaxFrame {
		return nil, fmt.Errorf("%w: %d-byte stream request, limit %d", ErrFrameTooLarge, len(req), t.cfg.MaxFrame)
	}
	if t.isClosed() {
		return nil, ErrClosed
	}
	conn, r, err := t.dial(ctx, to, kindStream)
	if err != nil {
		if t.isClosed() {
			return nil, fmt.Errorf("%w: %w", ErrClosed, err)
		}
		return nil, err
	}
	if err := sendRequest(conn, req, t.cfg.WriteTimeout); err != nil {
		t.release(conn)
		return nil, fmt.Errorf("lockstep: stream request to %q: %w", to, err)
	}
	s := &stream{t: t, conn: conn, r: r, ctx: ctx}
	// Registered only after the request's own deadline is cleared, so that
	// clearing it cannot undo an abort.
	s.stop = context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	return s, nil
}

func sendRequest(conn net.Conn, req []byte, timeout time.Duration) error {
	if err := conn.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := conn.Write(appendMessage(nil, req)); err != nil {
		return err
	}
	return conn.SetWriteDeadline(time.Time{})
}

// stream is the requester's side of a stream connection.
type stream struct {
	t      *Transport
	conn   net.Conn
	r      *bufio.Reader
	ctx    context.Context
	stop   func() bool
	remain int   // data bytes left in the current chunk
	err    error // sticky: once set, every Read returns it

	closeOnce sync.Once
	closed    atomic.Bool
}

// Read reads the response. See OpenStream for its errors.
func (s *stream) Read(p []byte) (int, error) {
	if s.err == nil && s.closed.Load() {
		s.err = s.failure(net.ErrClosed)
	}
	if s.err != nil {
		return 0, s.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	for s.remain == 0 {
		if err := s.nextChunk(); err != nil {
			s.err = err
			return 0, err
		}
	}
	if len(p) > s.remain {
		p = p[:s.remain]
	}
	n, err := s.r.Read(p)
	s.remain -= n
	if err != nil {
		s.err = s.failure(err)
		if n == 0 {
			return 0, s.err
		}
	}
	return n, nil
}

// nextChunk reads chunk headers up to the next data, the end or an error.
func (s *stream) nextChunk() error {
	typ, n, err := readChunkHeader(s.r)
	if err != nil {
		return s.failure(err)
	}
	switch typ {
	case chunkData:
		s.remain = n
		return nil
	case chunkEnd:
		return io.EOF
	case chunkError:
		if n > maxStatusMsg {
			return fmt.Errorf("%w: %d-byte stream error message", ErrProtocol, n)
		}
		msg := make([]byte, n)
		if _, err := io.ReadFull(s.r, msg); err != nil {
			return s.failure(err)
		}
		return fmt.Errorf("%w: %s", ErrRemote, msg)
	}
	return fmt.Errorf("%w: unknown stream chunk type %d", ErrProtocol, typ)
}

// failure explains why the connection under a stream failed.
func (s *stream) failure(err error) error {
	switch {
	case s.closed.Load():
		return fmt.Errorf("lockstep: read on closed stream: %w", net.ErrClosed)
	case s.ctx.Err() != nil:
		return fmt.Errorf("lockstep: stream aborted: %w", context.Cause(s.ctx))
	case s.t.isClosed():
		return ErrClosed
	}
	return fmt.Errorf("%w: %w", ErrTruncated, unexpected(err))
}

// Close ends the stream; the server's context is cancelled when it notices.
// It always returns nil.
func (s *stream) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.stop()
		s.t.release(s.conn)
	})
	return nil
}

// serveStream answers a stream request with Config.Snapshot.
func (t *Transport) serveStream(conn net.Conn, r *bufio.Reader, from string) {
	req, err := readRequest(conn, r, t.cfg)
	if err != nil {
		t.log.Warn("transport: bad stream request", "peer", from, "err", err)
		return
	}
	ctx, cancel := context.WithCancel(t.ctx)
	defer cancel()
	// The requester sends nothing after its request, so a return from this
	// read means it has gone away and the snapshot can stop.
	if !t.goroutine(func() {
		_, _ = r.ReadByte()
		cancel()
	}) {
		return
	}
	w := &chunkWriter{conn: conn, timeout: t.cfg.WriteTimeout, buf: make([]byte, chunkHeaderLen, chunkHeaderLen+streamChunk)}
	if t.cfg.Snapshot == nil {
		err = ErrNoSnapshot
	} else {
		err = t.cfg.Snapshot(ctx, from, req, w)
	}
	if err != nil {
		werr := w.abort(err)
		if ctx.Err() != nil {
			// The requester went away or the Transport is closing:
			// nobody is left to tell.
			t.log.Debug("transport: stream to peer abandoned", "peer", from, "err", err)
			return
		}
		if werr != nil {
			err = fmt.Errorf("%w (and reporting it failed: %w)", err, werr)
		}
		t.log.Warn("transport: stream to peer failed", "peer", from, "err", err)
		return
	}
	if err := w.finish(); err != nil {
		t.log.Warn("transport: stream to peer failed", "peer", from, "err", err)
	}
}

func readRequest(conn net.Conn, r *bufio.Reader, cfg Config) ([]byte, error) {
	if err := conn.SetReadDeadline(time.Now().Add(cfg.DialTimeout)); err != nil {
		return nil, err
	}
	req, err := readFrame(r, cfg.MaxFrame)
	if err != nil {
		return nil, err
	}
	return req, conn.SetReadDeadline(time.Time{})
}

// chunkWriter is the io.Writer given to Config.Snapshot: it cuts the response
// into data chunks of up to streamChunk bytes.
type chunkWriter struct {
	conn    net.Conn
	timeout time.Duration
	buf     []byte // chunk header space, then buffered data
	err     error  // sticky
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if w.err != nil {
			return written, w.err
		}
		n := copy(w.buf[len(w.buf):cap(w.buf)], p)
		w.buf = w.buf[:len(w.buf)+n]
		p = p[n:]
		written += n
		if len(w.buf) == cap(w.buf) {
			w.flush()
		}
	}
	return written, w.err
}

// flush sends the buffered data as one chunk.
func (w *chunkWriter) flush() {
	if len(w.buf) == chunkHeaderLen {
		return
	}
	putChunkHeader(w.buf, chunkData, len(w.buf)-chunkHeaderLen)
	w.send(w.buf)
	w.buf = w.buf[:chunkHeaderLen]
}

func (w *chunkWriter) send(b []byte) {
	if w.err != nil {
		return
	}
	if err := w.conn.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil {
		w.err = err
		return
	}
	_, w.err = w.conn.Write(b)
}

// finish sends what is buffered and the end marker.
func (w *chunkWriter) finish() error {
	w.flush()
	var end [chunkHeaderLen]byte
	putChunkHeader(end[:], chunkEnd, 0)
	w.send(end[:])
	return w.close()
}

// abort sends what is buffered and then cause as an error chunk.
func (w *chunkWriter) abort(cause error) error {
	w.flush()
	msg := cause.Error()
	if len(msg) > maxStatusMsg {
		msg = msg[:maxStatusMsg]
	}
	b := make([]byte, chunkHeaderLen, chunkHeaderLen+len(msg))
	putChunkHeader(b, chunkError, len(msg))
	w.send(append(b, msg...))
	return w.close()
}

// close makes later Writes fail, since w must not outlive the Snapshot call,
// and returns the first send error.
func (w *chunkWriter) close() error {
	err := w.err
	w.err = errWriterDone
	if errors.Is(err, errWriterDone) {
		return nil
	}
	return err
}
