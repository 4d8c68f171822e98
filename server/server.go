// Package server is lockstep's RESP front end: it accepts client
// connections, parses pipelined commands with the resp codec, answers
// connection-level commands itself (PING, AUTH, HELLO, CLIENT, COMMAND,
// INFO, ...) and hands data commands to a Backend, which orders, applies and
// gates them. One goroutine serves each connection; replies to a pipeline
// are written in one flush once the Backend says they may be released.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockstep/lockstep/resp"
	"github.com/lockstep/lockstep/statemachine"
)

// Backend executes data commands. node.Node is the standalone backend; the
// replication runtimes implement the same contract.
//
// Write and Read append the reply to out and return a gate: the reply must
// not be sent before Wait(ctx, gate) returns nil. All methods are safe for
// concurrent use.
type Backend interface {
	Commands() []statemachine.Command
	Write(args [][]byte, out []byte) ([]byte, uint64, error)
	Read(args [][]byte, out []byte) ([]byte, uint64, error)
	Wait(ctx context.Context, gate uint64) error
	// AppendInfo appends the INFO lines of a section the backend owns
	// (keyspace, replication, persistence) and reports whether it owns it.
	AppendInfo(section string, b []byte) ([]byte, bool)
}

// RoleReporter is a Backend that answers ROLE itself (a replica, in
// Redis's master/slave shape); a Backend that does not is a lone master.
type RoleReporter interface {
	AppendRole(out []byte) []byte
}

// CommitNotifier is a Backend that can report a gate's commit by calling
// back instead of making a connection wait in Wait, so the connection's
// goroutine parks once per request (for the next one) instead of twice.
type CommitNotifier interface {
	// OnCommit calls done once, with nil when gate commits or with the
	// error Wait would return, and reports true; or it reports false,
	// without calling done, when gate has committed already. done may run
	// on any goroutine, this one included, and does not block.
	OnCommit(gate uint64, done func(error)) bool
}

// Streamer is a Backend with commands whose reply is a stream too large to
// buffer (a backup of the whole state). The server hands such a command
// the connection: it writes the replies of the commands before it, calls
// Stream, and closes the connection once Stream returns, since the
// stream's end is the end of the conversation. A client therefore sends
// nothing after a streaming command.
type Streamer interface {
	// Streams reports whether the command named (lower case) streams.
	Streams(name string) bool
	// Stream answers the command by writing its replies to w, errors
	// included; an error it returns means w failed, and is only logged.
	// ctx ends when the connection is aborted.
	Stream(ctx context.Context, args [][]byte, w io.Writer) error
}

// Config holds the front end's settings; zero values take the defaults.
type Config struct {
	Backend     Backend
	RequirePass string
	MaxClients  int // default 10000
	Limits      resp.Limits
	// IdleTimeout closes connections silent this long; 0 disables it.
	IdleTimeout time.Duration
	Version     string
	Logger      *slog.Logger
	Metrics     *Metrics // nil disables metrics
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("lockstep: server closed")

// Server serves RESP clients.
type Server struct {
	cfg      Config
	table    map[string]*command
	started  time.Time
	nextID   atomic.Int64
	accepted atomic.Int64
	rejected atomic.Int64
	commands atomic.Int64

	mu       sync.Mutex
	ln       net.Listener
	conns    map[*conn]struct{}
	closing  bool
	draining sync.WaitGroup
}

// New builds a server around a backend.
func New(cfg Config) (*Server, error) {
	if cfg.Backend == nil {
		return nil, fmt.Errorf("lockstep: server needs a backend")
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = 10000
	}
	if cfg.Limits == (resp.Limits{}) {
		cfg.Limits = resp.DefaultLimits()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	s := &Server{cfg: cfg, started: time.Now(), conns: map[*conn]struct{}{}}
	s.table = buildTable(cfg.Backend, cfg.Metrics)
	return s, nil
}

// Serve accepts connections on ln until Shutdown. It returns
// ErrServerClosed after a Shutdown, or the accept error that stopped it.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.ln = ln
	s.mu.Unlock()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosing() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		s.accept(nc)
	}
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// accept registers a connection and starts its goroutine, or turns it
// away when the server is full or closing.
func (s *Server) accept(nc net.Conn) {
	s.accepted.Add(1)
	s.mu.Lock()
	if s.closing || len(s.conns) >= s.cfg.MaxClients {
		s.mu.Unlock()
		s.rejected.Add(1)
		_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = nc.Write([]byte("-ERR max number of clients reached\r\n"))
		_ = nc.Close()
		return
	}
	c := newConn(s, nc)
	s.conns[c] = struct{}{}
	s.draining.Add(1)
	s.mu.Unlock()
	if m := s.cfg.Metrics; m != nil {
		m.connected.Inc()
	}
	go c.serve()
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	if m := s.cfg.Metrics; m != nil {
		m.connected.Dec()
	}
	s.draining.Done()
}

// Addr returns the listening address, or nil before Serve.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Clients returns the number of connected clients.
func (s *Server) Clients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Shutdown stops accepting, lets every connection finish the commands it
// has already read and flush their replies, then returns. If ctx ends first
// the remaining connections are closed at once and ctx's error returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	if s.ln != nil {
		_ = s.ln.Close()
	}
	for c := range s.conns {
		c.stopReading()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() { s.draining.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.abort()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}
