package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"time"

	"github.com/lockstep/lockstep/resp"
)

// readSize is the least free space offered to each read from the client.
const readSize = 4 << 10

// noProto is the reply a RESP2-only server gives to HELLO 3.
const noProto = "NOPROTO sorry, this protocol version is not supported."

// session relays one client connection over its own server connection.
type session struct {
	p       *Proxy
	client  net.Conn
	server  net.Conn
	parser  *resp.Parser
	replies *resp.Reader
	buf     []byte // client bytes read; buf[off:] is not yet parsed
	off     int
	out     []byte // the reply being written, reused
}

// serve relays requests from client until either side closes, a fault
// strikes or the proxy shuts down.
func (p *Proxy) serve(client net.Conn) {
	defer p.release(client)
	target := p.currentTarget()
	ctx, cancel := context.WithTimeout(p.ctx, dialTimeout)
	var d net.Dialer
	server, err := d.DialContext(ctx, "tcp", target)
	cancel()
	if err != nil {
		p.log.Warn("faultproxy: cannot reach the server, closing the client", "target", target, "err", err)
		return
	}
	if !p.track(server) {
		return
	}
	defer p.release(server)
	s := &session{
		p:       p,
		client:  client,
		server:  server,
		parser:  resp.NewParser(resp.Limits{}),
		replies: resp.NewReader(server),
	}
	err = s.relay()
	if p.ctx.Err() == nil && !errors.Is(err, io.EOF) {
		p.log.Debug("faultproxy: connection ended", "client", client.RemoteAddr().String(), "err", err)
	}
}

// errFault ends a session whose request or reply was dropped.
var errFault = errors.New("faultproxy: dropped by fault injection")

// relay forwards requests one at a time until an error or a fault ends the
// session.
func (s *session) relay() error {
	for {
		raw, args, err := s.nextRequest()
		if err != nil {
			return err
		}
		if refusesProtocol(args) {
			if err := s.reply(resp.Value{Type: '-', Str: []byte(noProto)}); err != nil {
				return err
			}
			continue
		}
		if err := s.forward(raw); err != nil {
			return err
		}
	}
}

// forward applies the faults to one request and, unless they drop it, sends
// it to the server and passes the reply back.
func (s *session) forward(raw []byte) error {
	p := s.p
	v := p.decide()
	if v.dropRequest {
		p.requestsDropped.Add(1)
		return errFault
	}
	if v.delay > 0 && !sleepCtx(p.ctx, v.delay) {
		return p.ctx.Err()
	}
	if _, err := s.server.Write(raw); err != nil {
		return err
	}
	p.forwarded.Add(1)
	reply, err := s.replies.ReadValue()
	if err != nil {
		return err
	}
	if v.dropReply {
		p.repliesDropped.Add(1)
		return errFault
	}
	return s.reply(reply)
}

func (s *session) reply(v resp.Value) error {
	s.out = resp.AppendValue(s.out[:0], v)
	_, err := s.client.Write(s.out)
	return err
}

// nextRequest returns the next request from the client, as the raw bytes to
// forward and its parsed arguments. Both are valid until the next call. A
// malformed request gets Redis's protocol error reply and ends the session.
func (s *session) nextRequest() (raw []byte, args [][]byte, err error) {
	for {
		args, n, err := s.parser.Parse(s.buf[s.off:])
		if err != nil {
			var pe *resp.ProtocolError
			if errors.As(err, &pe) {
				s.reply(resp.Value{Type: '-', Str: []byte(pe.Reply())})
			}
			return nil, nil, err
		}
		if n > 0 {
			raw = s.buf[s.off : s.off+n]
			s.off += n
			if len(args) == 0 {
				continue // an empty command, which Redis skips without a reply
			}
			return raw, args, nil
		}
		if err := s.fill(); err != nil {
			return nil, nil, err
		}
	}
}

// fill reads more client bytes behind the partial request at buf[off:].
func (s *session) fill() error {
	if s.off > 0 {
		// Moving the partial request to the front keeps the buffer the size
		// of one request; the Parser resumes on a moved buffer.
		n := copy(s.buf, s.buf[s.off:])
		s.buf, s.off = s.buf[:n], 0
	}
	want := max(len(s.buf)+readSize, s.parser.Need())
	s.buf = slices.Grow(s.buf, want-len(s.buf))
	n, err := s.client.Read(s.buf[len(s.buf):cap(s.buf)])
	s.buf = s.buf[:len(s.buf)+n]
	if n > 0 {
		return nil // a read error comes again on the next read
	}
	return err
}

// refusesProtocol reports whether args is a HELLO asking for a protocol
// other than RESP2, which the proxy cannot frame replies for.
func refusesProtocol(args [][]byte) bool {
	return len(args) >= 2 && bytes.EqualFold(args[0], []byte("hello")) && string(args[1]) != "2"
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
