package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockstep/lockstep/internal/rawio"
	"github.com/lockstep/lockstep/kv"
	"github.com/lockstep/lockstep/node"
	"github.com/lockstep/lockstep/resp"
	"github.com/lockstep/lockstep/statemachine"
	"github.com/lockstep/lockstep/storage"
)

// commitBackend gates every write's reply on a commit the test releases,
// and reports commits through OnCommit, as a replicated backend does.
// "BIG n" is a write whose reply is n bytes.
type commitBackend struct {
	*node.Node
	mu      sync.Mutex
	gates   uint64
	commit  uint64
	changed chan struct{}
	pending map[uint64][]func(error)
	wrote   chan struct{} // a token per write run
	handed  chan struct{} // a token per OnCommit that took a callback
}

func newCommitBackend(t *testing.T) *commitBackend {
	store := storage.NewMemory()
	n, err := node.New(node.Config{Machine: kv.New(store, kv.Options{}), Store: store})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return &commitBackend{Node: n, changed: make(chan struct{}), pending: map[uint64][]func(error){},
		wrote: make(chan struct{}, 1000), handed: make(chan struct{}, 1000)}
}

func (b *commitBackend) Commands() []statemachine.Command {
	return append(b.Node.Commands(), statemachine.Command{Name: "big", Arity: 2, Kind: statemachine.KindWrite})
}

func (b *commitBackend) Write(args [][]byte, out []byte) ([]byte, uint64, error) {
	if strings.EqualFold(string(args[0]), "big") {
		n, _ := strconv.Atoi(string(args[1]))
		out = resp.AppendBulk(out, bytes.Repeat([]byte("x"), n))
	} else {
		var err error
		if out, _, err = b.Node.Write(args, out); err != nil {
			return out, 0, err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gates++
	b.wrote <- struct{}{}
	return out, b.gates, nil
}

func (b *commitBackend) Wait(ctx context.Context, gate uint64) error {
	for {
		b.mu.Lock()
		done, ch := b.commit >= gate, b.changed
		b.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (b *commitBackend) OnCommit(gate uint64, done func(error)) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.commit >= gate {
		return false
	}
	b.pending[gate] = append(b.pending[gate], done)
	b.handed <- struct{}{}
	return true
}

// release commits every gate handed out so far, or with err fails every
// pending callback instead.
func (b *commitBackend) release(err error) {
	b.mu.Lock()
	var fns []func(error)
	for g, fs := range b.pending {
		fns = append(fns, fs...)
		delete(b.pending, g)
	}
	if err == nil {
		b.commit = b.gates
		close(b.changed)
		b.changed = make(chan struct{})
	}
	b.mu.Unlock()
	for _, f := range fns {
		f(err)
	}
}

func startNotifyServer(t *testing.T) (*commitBackend, string) {
	b := newCommitBackend(t)
	_, addr := startServer(t, func(c *Config) { c.Backend = b })
	return b, addr
}

// awaitHandOff waits until the server has handed n more replies to the
// backend.
func awaitHandOff(t *testing.T, b *commitBackend, n int) {
	t.Helper()
	awaitTokens(t, b.handed, n, "replies handed to the backend")
}

func awaitTokens(t *testing.T, ch <-chan struct{}, n int, what string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for i := range n {
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("%d %s, want %d", i, what, n)
		}
	}
}

// assertNothingYet checks that no reply arrives while the commit is
// outstanding (a short read must time out).
func assertNothingYet(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var one [1]byte
	if n, err := c.Read(one[:]); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read before the commit = %d bytes, %v; want nothing", n, err)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
}

func TestHandedOffRepliesLeaveAtCommit(t *testing.T) {
	b, addr := startNotifyServer(t)
	cl := dial(t, addr)
	cl.send("SET a 1\r\nSET b 2\r\nSET c 3\r\n")
	awaitHandOff(t, b, 1)
	assertNothingYet(t, cl.c)
	b.release(nil)
	for range 3 {
		if v := cl.read(); v != "OK" {
			t.Fatalf("reply after the commit: %q", v)
		}
	}
	// The connection goes on: a read is not gated, a write is again.
	cl.send("GET b\r\n")
	if v := cl.read(); v != `"2"` {
		t.Fatalf("GET b = %s", v)
	}
	cl.send("SET d 4\r\n")
	awaitHandOff(t, b, 1)
	b.release(nil)
	if v := cl.read(); v != "OK" {
		t.Fatalf("second SET = %q", v)
	}
}

func TestHandedOffReplyFailureClosesTheConnection(t *testing.T) {
	b, addr := startNotifyServer(t)
	cl := dial(t, addr)
	cl.send("SET a 1\r\n")
	awaitHandOff(t, b, 1)
	b.release(errors.New("outcome unknown"))
	got, err := io.ReadAll(cl.c)
	if err != nil || len(got) != 0 {
		t.Fatalf("after a failed commit the client read %q, %v; want the connection closed with no reply", got, err)
	}
}

// A reply larger than what the socket takes at once cannot be written by
// the backend's goroutine, which must not wait for the client: deliver
// writes what fits and a goroutine of its own writes the rest, whole and
// in order, while the client reads.
func TestDeliverLeavesTheRestToAGoroutine(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := client.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	c := &conn{nc: nc, rw: rawio.Wrap(nc), delivered: make(chan error, 1)}
	c.out = bytes.Repeat([]byte("0123456789"), 2<<20) // 20 MiB
	returned := make(chan struct{})
	go func() { c.deliver(nil); close(returned) }()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("deliver waited for a client that is not reading")
	}
	got, err := io.ReadAll(io.LimitReader(client, int64(len(c.out))))
	if err != nil || !bytes.Equal(got, c.out) {
		t.Fatalf("client read %d bytes (%v), not the %d written in order", len(got), err, len(c.out))
	}
	if err := <-c.delivered; err != nil {
		t.Fatalf("outcome %v after the whole reply was written", err)
	}
}

// Replies too large to buffer are flushed while the command runs, on the
// connection's own goroutine through Wait, even when the backend could
// call back: nothing may be appended to a buffer the backend is writing.
func TestLargeReplyStillWaitsInline(t *testing.T) {
	b, addr := startNotifyServer(t)
	cl := dial(t, addr)
	const size = 1 << 20
	cl.send("BIG " + strconv.Itoa(size) + "\r\nSET a 1\r\n")
	awaitTokens(t, b.wrote, 1, "writes run")
	assertNothingYet(t, cl.c)
	b.release(nil) // BIG's reply leaves through Wait
	v, err := cl.r.ReadValue()
	if err != nil || len(v.Str) != size {
		t.Fatalf("big reply: %v, %d bytes", err, len(v.Str))
	}
	awaitHandOff(t, b, 1) // SET's reply is handed off
	b.release(nil)
	if v := cl.read(); v != "OK" {
		t.Fatalf("SET after BIG = %q", v)
	}
}

// Shutdown lets a handed-off reply go out when its commit comes.
func TestShutdownWaitsForAHandedOffReply(t *testing.T) {
	b := newCommitBackend(t)
	s, addr := startServer(t, func(c *Config) { c.Backend = b })
	cl := dial(t, addr)
	cl.send("SET a 1\r\n")
	awaitHandOff(t, b, 1)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	b.release(nil)
	if v := cl.read(); v != "OK" {
		t.Fatalf("reply during shutdown = %q", v)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
}

// With an idle timeout, fill arms a read deadline of its own before every
// read; a failed hand-off must still end the read at once, not at the
// idle timeout.
func TestFailedHandOffEndsTheReadDespiteIdleTimeout(t *testing.T) {
	b := newCommitBackend(t)
	_, addr := startServer(t, func(c *Config) { c.Backend = b; c.IdleTimeout = time.Hour })
	for range 20 { // the failure and fill race differently each time
		cl := dial(t, addr)
		cl.send("SET a 1\r\n")
		awaitHandOff(t, b, 1)
		b.release(errors.New("outcome unknown"))
		_ = cl.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(cl.c)
		if err != nil || len(got) != 0 {
			t.Fatalf("after a failed hand-off the client read %q, %v; want the connection closed at once", got, err)
		}
		cl.c.Close()
	}
}
