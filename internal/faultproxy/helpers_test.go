package faultproxy

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lockstep/lockstep/resp"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// nested is the reply of the fake server's NESTED command: every RESP2 type,
// nested, with both nulls.
var nested = resp.Value{Type: '*', Array: []resp.Value{
	{Type: '$', Str: []byte("a")},
	{Type: '$', Null: true},
	{Type: '*', Array: []resp.Value{
		{Type: ':', Int: -7},
		{Type: '-', Str: []byte("ERR inner")},
		{Type: '*', Array: []resp.Value{}},
	}},
	{Type: '*', Null: true},
	{Type: '+', Str: []byte("OK")},
}}

// fakeServer is a tiny RESP server: INCR and GET on counters, PING, ECHO,
// NESTED; anything else is an unknown command.
type fakeServer struct {
	ln net.Listener
	wg sync.WaitGroup

	mu     sync.Mutex
	counts map[string]int64
	cmds   int // commands received
	conns  map[net.Conn]struct{}
}

func startFake(t *testing.T) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{ln: ln, counts: make(map[string]int64), conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.close)
	return s
}

func (s *fakeServer) addr() string { return s.ln.Addr().String() }

func (s *fakeServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *fakeServer) count(key string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[key]
}

func (s *fakeServer) commands() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmds
}

func (s *fakeServer) accept() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[conn] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conn.Close()
			s.serve(conn)
		}()
	}
}

func (s *fakeServer) serve(conn net.Conn) {
	p := resp.NewParser(resp.Limits{})
	var buf, out []byte
	chunk := make([]byte, 4096)
	for {
		args, n, err := p.Parse(buf)
		if err != nil {
			return
		}
		if n == 0 {
			m, err := conn.Read(chunk)
			if err != nil {
				return
			}
			buf = append(buf, chunk[:m]...)
			continue
		}
		if len(args) > 0 {
			out = s.exec(out[:0], args)
			if _, err := conn.Write(out); err != nil {
				return
			}
		}
		buf = buf[n:]
	}
}

func (s *fakeServer) exec(out []byte, args [][]byte) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cmds++
	switch name := strings.ToUpper(string(args[0])); {
	case name == "PING":
		return resp.AppendSimple(out, "PONG")
	case name == "INCR" && len(args) == 2:
		s.counts[string(args[1])]++
		return resp.AppendInt(out, s.counts[string(args[1])])
	case name == "GET" && len(args) == 2:
		n, ok := s.counts[string(args[1])]
		if !ok {
			return resp.AppendNull(out)
		}
		return resp.AppendInt(out, n)
	case name == "ECHO" && len(args) == 2:
		return resp.AppendBulk(out, args[1])
	case name == "NESTED":
		return resp.AppendValue(out, nested)
	default:
		return resp.AppendError(out, "ERR unknown command '"+name+"'")
	}
}

// startProxy starts a proxy in front of target and closes it when the test
// ends.
func startProxy(t *testing.T, opts Options) *Proxy {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	p, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

// testWriter sends log lines to t.Log, so they show with failures and -v.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// rawClient is a bare RESP connection to a proxy.
type rawClient struct {
	conn net.Conn
	r    *resp.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// A proxy that neither replies nor closes fails the test, not hangs it.
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawClient{conn: conn, r: resp.NewReader(conn)}
}

// send writes the commands in one write, pipelined.
func (c *rawClient) send(t *testing.T, cmds ...[]string) {
	t.Helper()
	var b []byte
	for _, cmd := range cmds {
		b = resp.AppendCommandStrings(b, cmd...)
	}
	if _, err := c.conn.Write(b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func (c *rawClient) read(t *testing.T) resp.Value {
	t.Helper()
	v, err := c.r.ReadValue()
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	return v
}

// expectClosed checks that the proxy closed the connection instead of
// replying.
func (c *rawClient) expectClosed(t *testing.T) {
	t.Helper()
	v, err := c.r.ReadValue()
	if err == nil {
		t.Fatalf("got reply %v, want the connection closed", v)
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		t.Fatalf("read: %v, want the connection closed", err)
	}
}

func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}
