package transport

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"time"
)

// readBufSize is the read buffer of an accepted connection. Message payloads
// up to this size reach the Handler straight from the buffer, uncopied.
const readBufSize = 64 << 10

// maxScratch is the largest buffer a reader keeps for payloads too big for
// its read buffer; a bigger payload gets a buffer of its own.
const maxScratch = 1 << 20

// inbound is an accepted message connection, registered under its peer's name.
type inbound struct {
	conn    net.Conn
	retired atomic.Bool   // replaced by a newer connection, or dropped
	done    chan struct{} // closed when its reader has returned
}

// retire stops the connection's deliveries and closes it. The reader checks
// retired before each Handler call, since messages already in its buffer can
// still be read after the close.
func (in *inbound) retire() {
	in.retired.Store(true)
	in.conn.Close()
}

// serveConn runs an accepted connection: handshake, then messages or a
// stream.
func (t *Transport) serveConn(conn net.Conn) {
	defer t.release(conn)
	r := bufio.NewReaderSize(conn, readBufSize)
	h, err := t.accept(conn, r)
	if err != nil {
		t.log.Log(context.Background(), refusalLevel(err), "transport: refused connection", "remote", conn.RemoteAddr().String(), "err", err)
		return
	}
	switch h.kind {
	case kindMessages:
		t.serveMessages(conn, r, h.name)
	case kindStream:
		t.serveStream(conn, r, h.name)
	}
}

// refusalLevel picks the log level for a refused connection: a foreign
// cluster is a misconfiguration worth an error, while a connection that
// closes before its handshake is mostly an aborted dial.
func refusalLevel(err error) slog.Level {
	switch {
	case errors.Is(err, ErrWrongCluster):
		return slog.LevelError
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

// accept reads the handshake and answers it.
func (t *Transport) accept(conn net.Conn, r *bufio.Reader) (hello, error) {
	if err := conn.SetDeadline(time.Now().Add(t.cfg.DialTimeout)); err != nil {
		return hello{}, err
	}
	h, err := readHello(r)
	if err != nil {
		// Not our protocol (or not our version): say so if we can, so that
		// an older or newer node logs the reason.
		_, _ = conn.Write(appendStatus(nil, statusRefused, err.Error()))
		return hello{}, err
	}
	code, reason := statusOK, ""
	switch {
	case h.cluster != t.cfg.ClusterID:
		code = statusWrongCluster
		reason = fmt.Sprintf("node %q is in cluster %q, not %q", t.cfg.Name, t.cfg.ClusterID, h.cluster)
		err = fmt.Errorf("%w: peer %q is in cluster %q, this node is in %q", ErrWrongCluster, h.name, h.cluster, t.cfg.ClusterID)
	case h.kind != kindMessages && h.kind != kindStream:
		code = statusRefused
		reason = fmt.Sprintf("unknown connection kind %d", h.kind)
		err = fmt.Errorf("%w: peer %q: %s", ErrHandshake, h.name, reason)
	}
	if _, werr := conn.Write(appendStatus(nil, code, reason)); werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		return hello{}, err
	}
	return h, conn.SetDeadline(time.Time{})
}

// serveMessages registers the connection as peer from's inbound link,
// replacing an older one, and delivers its messages.
func (t *Transport) serveMessages(conn net.Conn, r *bufio.Reader, from string) {
	in := &inbound{conn: conn, done: make(chan struct{})}
	defer close(in.done)
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	prev := t.inbound[from]
	t.inbound[from] = in
	t.mu.Unlock()
	defer t.unregister(from, in)
	if prev != nil {
		// A peer dials again only once its old connection failed, so the
		// old one is stale. Wait for its reader to finish so that Handler
		// calls for one peer never overlap.
		prev.retire()
		select {
		case <-prev.done:
		case <-t.ctx.Done():
			return
		}
	}
	err := t.readMessages(r, from, in)
	switch {
	case in.retired.Load() || t.isClosed():
	case errors.Is(err, io.EOF):
		t.log.Debug("transport: peer closed its connection", "peer", from)
	case errors.Is(err, ErrFrameTooLarge):
		t.log.Error("transport: closing connection from peer", "peer", from, "err", err)
	default:
		t.log.Warn("transport: connection from peer failed", "peer", from, "err", err)
	}
}

func (t *Transport) unregister(from string, in *inbound) {
	t.mu.Lock()
	if t.inbound[from] == in {
		delete(t.inbound, from)
	}
	t.mu.Unlock()
}

// readMessages delivers frames to the Handler until the connection fails or
// is retired. Payloads that fit the read buffer are passed without copying.
func (t *Transport) readMessages(r *bufio.Reader, from string, in *inbound) error {
	var scratch []byte
	var msgs, bytes uint64
	for {
		if r.Buffered() == 0 && msgs > 0 {
			// About to block: the burst that arrived together is handled.
			if t.cfg.BurstDone != nil {
				t.cfg.BurstDone(from)
			}
			// Publish the counts gathered so far.
			t.stats.msgsReceived.Add(msgs)
			t.stats.bytesReceived.Add(bytes)
			msgs, bytes = 0, 0
		}
		size, err := binary.ReadUvarint(r)
		if err != nil {
			return err
		}
		if size > uint64(t.cfg.MaxFrame) {
			return fmt.Errorf("%w: %d-byte frame from %q, limit %d", ErrFrameTooLarge, size, from, t.cfg.MaxFrame)
		}
		n := int(size)
		var payload []byte
		inBuffer := n <= r.Size()
		if inBuffer {
			payload, err = r.Peek(n)
		} else {
			payload, err = readLarge(r, n, &scratch)
		}
		if err != nil {
			return unexpected(err)
		}
		if in.retired.Load() {
			return nil
		}
		t.cfg.Handler(from, payload)
		if inBuffer {
			_, _ = r.Discard(n)
		}
		msgs++
		bytes += uint64(uvarintLen(size) + n)
	}
}

// readLarge reads an n-byte payload that does not fit the read buffer,
// reusing *scratch when it is big enough and not too big to keep.
func readLarge(r io.Reader, n int, scratch *[]byte) ([]byte, error) {
	buf := *scratch
	if cap(buf) < n {
		buf = make([]byte, n)
		if n <= maxScratch {
			*scratch = buf
		}
	}
	buf = buf[:n]
	_, err := io.ReadFull(r, buf)
	return buf, err
}
