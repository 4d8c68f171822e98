package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lockstep/lockstep/kv"
	"github.com/lockstep/lockstep/node"
	"github.com/lockstep/lockstep/resp"
	"github.com/lockstep/lockstep/storage"
)

// startServer runs a server over a memory store on a port chosen by the OS.
func startServer(t *testing.T, mutate func(*Config)) (*Server, string) {
	t.Helper()
	store := storage.NewMemory()
	n, err := node.New(node.Config{Machine: kv.New(store, kv.Options{}), Store: store})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Backend: n}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-errc; err != ErrServerClosed {
			t.Errorf("Serve returned %v", err)
		}
		_ = n.Close()
	})
	return s, ln.Addr().String()
}

type client struct {
	t  *testing.T
	c  net.Conn
	r  *resp.Reader
	bw *bufio.Writer
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return &client{t: t, c: c, r: resp.NewReader(c), bw: bufio.NewWriter(c)}
}

func (cl *client) send(raw string) {
	cl.t.Helper()
	if _, err := cl.c.Write([]byte(raw)); err != nil {
		cl.t.Fatal(err)
	}
}

func (cl *client) do(args ...string) string {
	cl.t.Helper()
	cl.send(string(resp.AppendCommandStrings(nil, args...)))
	return cl.read()
}

func (cl *client) read() string {
	cl.t.Helper()
	v, err := cl.r.ReadValue()
	if err != nil {
		cl.t.Fatalf("read reply: %v", err)
	}
	return v.String()
}

// expectClosed asserts the server closed the connection after an optional
// error reply.
func (cl *client) expectClosed() {
	cl.t.Helper()
	for {
		_, err := cl.r.ReadValue()
		if err == io.EOF || isReset(err) {
			return
		}
		if err != nil {
			cl.t.Fatalf("want the connection closed, got %v", err)
		}
	}
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "reset by peer") || strings.Contains(err.Error(), "EOF"))
}

func TestPipelineAndInline(t *testing.T) {
	_, addr := startServer(t, nil)
	cl := dial(t, addr)
	var b []byte
	for i := range 100 {
		b = resp.AppendCommandStrings(b, "SET", fmt.Sprint("k", i), fmt.Sprint(i))
	}
	b = resp.AppendCommandStrings(b, "GET", "k99")
	cl.send(string(b))
	for range 100 {
		if got := cl.read(); got != "OK" {
			t.Fatalf("pipelined SET = %s", got)
		}
	}
	if got := cl.read(); got != `"99"` {
		t.Fatalf("GET k99 = %s", got)
	}
	cl.send("SET inline \"a b\"\r\nGET inline\nPING\r\n\r\n")
	for _, want := range []string{"OK", `"a b"`, "PONG"} {
		if got := cl.read(); got != want {
			t.Fatalf("inline: got %s, want %s", got, want)
		}
	}
}

// TestBadInputIsolated sends each kind of malformed input on its own
// connection and checks that the connection gets an error or is closed,
// that memory stays bounded, and that another client is served throughout.
func TestBadInputIsolated(t *testing.T) {
	_, addr := startServer(t, nil)
	good := dial(t, addr)
	if got := good.do("SET", "survivor", "1"); got != "OK" {
		t.Fatal(got)
	}
	cases := []struct {
		name, raw, wantErr string
	}{
		{"garbage", "*\x00\xff\xfe garbage\r\n", "ERR Protocol error: invalid multibulk length"},
		{"huge bulk", "*2\r\n$3\r\nGET\r\n$1099511627776\r\n", "ERR Protocol error: invalid bulk length"},
		{"huge count", "*1099511627776\r\n", "ERR Protocol error: invalid multibulk length"},
		{"not a bulk", "*1\r\n+GET\r\n", "ERR Protocol error: expected '$', got '+'"},
		{"unbalanced quotes", "SET \"a b\r\n", "ERR Protocol error: unbalanced quotes in request"},
	}
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, c := range cases {
		bad := dial(t, addr)
		bad.send(c.raw)
		if got := bad.read(); got != "(error) "+c.wantErr && got != c.wantErr {
			t.Errorf("%s: reply %s, want %s", c.name, got, c.wantErr)
		}
		bad.expectClosed()
		if got := good.do("GET", "survivor"); got != `"1"` {
			t.Fatalf("after %s, other client got %s", c.name, got)
		}
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 64<<20 {
		t.Errorf("heap grew by %d bytes on bad input", grew)
	}
}

// TestHalfSentCommand leaves a command unfinished and disconnects: nothing
// is applied, and other clients are served while it hangs.
func TestHalfSentCommand(t *testing.T) {
	_, addr := startServer(t, nil)
	half := dial(t, addr)
	half.send("*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$5\r\nval")
	good := dial(t, addr)
	if got := good.do("PING"); got != "PONG" {
		t.Fatal(got)
	}
	half.c.Close()
	if got := good.do("EXISTS", "half"); got != "(integer) 0" && got != "0" {
		t.Fatalf("half-sent SET was applied: EXISTS = %s", got)
	}
}

// TestHalfClosedClientGetsItsRepliesAndTheEnd checks a client that sends
// its commands and shuts down its side at once, as "nc -N" does: it gets
// every reply, then the server's end of the stream. The end of the input
// often arrives with the commands themselves; the server must still see
// it while it waits for the next request without reading (rawio.ReadEach).
func TestHalfClosedClientGetsItsRepliesAndTheEnd(t *testing.T) {
	_, addr := startServer(t, nil)
	for i := range 50 {
		cl := dial(t, addr)
		cl.send("SET k" + fmt.Sprint(i) + " v\r\nPING\r\n")
		if err := cl.c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if got := cl.read(); got != "OK" {
			t.Fatalf("connection %d: SET = %q", i, got)
		}
		if got := cl.read(); got != "PONG" {
			t.Fatalf("connection %d: PING = %q", i, got)
		}
		if _, err := cl.r.ReadValue(); err != io.EOF {
			t.Fatalf("connection %d: after the replies got %v, want the end of the stream", i, err)
		}
	}
}

// TestManyArguments sends a 10,000-argument command: it is parsed and
// answered like any other.
func TestManyArguments(t *testing.T) {
	_, addr := startServer(t, nil)
	cl := dial(t, addr)
	args := []string{"MSET"}
	for i := range 5000 {
		args = append(args, fmt.Sprint("m", i), "v")
	}
	if got := cl.do(args...); got != "OK" {
		t.Fatalf("MSET with 10,001 arguments = %s", got)
	}
	args[0] = "GET"
	if got := cl.do(args[:10000]...); !strings.Contains(got, "wrong number of arguments for 'get'") {
		t.Fatalf("GET with 10,000 arguments = %s", got)
	}
	if got := cl.do("DBSIZE"); !strings.Contains(got, "5000") {
		t.Fatalf("DBSIZE = %s", got)
	}
}

func TestArgLimitClosesConnection(t *testing.T) {
	_, addr := startServer(t, func(c *Config) { c.Limits = resp.Limits{MaxBulkLen: 1 << 20, MaxArgs: 100, MaxInlineLen: 1 << 16} })
	cl := dial(t, addr)
	cl.send("*101\r\n")
	if got := cl.read(); !strings.Contains(got, "Protocol error") {
		t.Fatalf("101 args over a limit of 100: %s", got)
	}
	cl.expectClosed()
}

func TestMaxClients(t *testing.T) {
	s, addr := startServer(t, func(c *Config) { c.MaxClients = 2 })
	a, b := dial(t, addr), dial(t, addr)
	a.do("PING")
	b.do("PING")
	c := dial(t, addr)
	if got := c.read(); !strings.Contains(got, "max number of clients reached") {
		t.Fatalf("third client got %s", got)
	}
	if s.Clients() != 2 {
		t.Fatalf("Clients() = %d", s.Clients())
	}
}

func TestAuth(t *testing.T) {
	_, addr := startServer(t, func(c *Config) { c.RequirePass = "s3cret" })
	cl := dial(t, addr)
	for _, step := range []struct{ args, want string }{
		{"GET k", "NOAUTH Authentication required."},
		{"AUTH wrong", "WRONGPASS invalid username-password pair or user is disabled."},
		{"AUTH other s3cret", "WRONGPASS invalid username-password pair or user is disabled."},
		{"HELLO 2 AUTH default wrong", "WRONGPASS invalid username-password pair or user is disabled."},
		{"AUTH s3cret", "OK"},
		{"GET k", "(nil)"},
	} {
		got := cl.do(strings.Fields(step.args)...)
		if !strings.Contains(got, step.want) {
			t.Errorf("%s = %s, want %s", step.args, got, step.want)
		}
	}
	cl2 := dial(t, addr)
	if got := cl2.do("HELLO", "2", "AUTH", "default", "s3cret"); !strings.Contains(got, "lockstep") {
		t.Fatalf("HELLO with AUTH = %s", got)
	}
	if got := cl2.do("PING"); got != "PONG" {
		t.Fatalf("after HELLO AUTH: %s", got)
	}
}

func TestConnectionCommands(t *testing.T) {
	_, addr := startServer(t, nil)
	cl := dial(t, addr)
	for _, step := range []struct{ args, want string }{
		{"HELLO 3", "NOPROTO"},
		{"HELLO 2 SETNAME app", "proto"},
		{"CLIENT GETNAME", "app"},
		{"CLIENT ID", "1"},
		{"CLIENT LIST", "name=app"},
		{"COMMAND COUNT", ""},
		{"COMMAND INFO get nosuch", "get"},
		{"COMMAND DOCS", ""},
		{"CONFIG GET save", "save"},
		{"INFO", "# Keyspace"},
		{"INFO server clients", "connected_clients:1"},
		{"INFO replication", "role:master"},
		{"SELECT 0", "OK"},
	} {
		got := cl.do(strings.Fields(step.args)...)
		if !strings.Contains(got, step.want) || strings.Contains(got, "ERR") {
			t.Errorf("%s = %s, want it to contain %q", step.args, got, step.want)
		}
	}
	if got := cl.do("QUIT"); got != "OK" {
		t.Fatal(got)
	}
	cl.expectClosed()
}

// TestShutdownFinishesInFlight checks that Shutdown answers the commands a
// connection has already read, in order and whole, before closing it.
func TestShutdownFinishesInFlight(t *testing.T) {
	s, addr := startServer(t, nil)
	cl := dial(t, addr)
	var b []byte
	for range 1000 {
		b = resp.AppendCommandStrings(b, "INCR", "n")
	}
	cl.send(string(b))
	if got := cl.read(); got != "(integer) 1" {
		t.Fatalf("first INCR = %s", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 2; ; i++ {
		v, err := cl.r.ReadValue()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reply %d: %v (a reply was cut short)", i, err)
		}
		if want := fmt.Sprintf("(integer) %d", i); v.String() != want {
			t.Fatalf("reply %d = %s, want %s", i, v, want)
		}
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("still accepting after Shutdown")
	}
}

// TestLargeValue round-trips an 8 MiB value, which crosses many reads and
// buffer growths on the way in and many writes on the way out.
func TestLargeValue(t *testing.T) {
	_, addr := startServer(t, nil)
	cl := dial(t, addr)
	big := strings.Repeat("0123456789abcdef", 1<<19)
	if got := cl.do("SET", "big", big, "GET"); got != "(nil)" {
		t.Fatalf("SET big = %.40s", got)
	}
	if got := cl.do("STRLEN", "big"); got != fmt.Sprintf("(integer) %d", len(big)) {
		t.Fatalf("STRLEN = %s", got)
	}
	cl.send(string(resp.AppendCommandStrings(nil, "GET", "big")))
	v, err := cl.r.ReadValue()
	if err != nil || string(v.Str) != big {
		t.Fatalf("GET big: %v, %d bytes", err, len(v.Str))
	}
}

// TestShutdownDoesNotWaitForIdleClients: an idle client that keeps its
// connection open (a pool) does not hold Shutdown for the whole linger, so
// a node that leaves its group on shutdown leaves promptly.
func TestShutdownDoesNotWaitForIdleClients(t *testing.T) {
	defer func(d time.Duration) { lingerTime = d }(lingerTime)
	lingerTime = time.Hour // a shutdown that waits out the linger fails the 5 s context
	s, addr := startServer(t, nil)
	var idle []*client
	for range 4 {
		cl := dial(t, addr)
		if got := cl.do("PING"); got != "PONG" {
			t.Fatalf("PING = %s", got)
		}
		idle = append(idle, cl)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with %d idle clients: %v (it waited for them to close)", len(idle), err)
	}
}
