package transport

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestWrongClusterRefused(t *testing.T) {
	dir := newDirectory()
	var delivered atomic.Int64
	a := startNode(t, dir, "a", func(c *Config) { c.ClusterID = "east" })
	b := startNode(t, dir, "b", func(c *Config) {
		c.ClusterID = "west"
		c.Handler = func(string, []byte) { delivered.Add(1) }
	})
	a.Send("b", []byte("x"))
	waitFor(t, 5*time.Second, "both sides to log the refusal", func() bool {
		return a.log.contains("lockstep: wrong cluster") && b.log.contains("lockstep: wrong cluster")
	})
	for _, want := range []string{`cluster \"west\"`, `not \"east\"`, "level=ERROR"} {
		if !a.log.contains(want) {
			t.Errorf("a's log lacks %s:\n%s", want, a.log)
		}
	}
	_, err := a.OpenStream(context.Background(), "b", nil)
	if !errors.Is(err, ErrWrongCluster) {
		t.Fatalf("OpenStream across clusters: %v, want ErrWrongCluster", err)
	}
	if n := delivered.Load(); n != 0 {
		t.Fatalf("%d messages delivered across clusters", n)
	}
	if st := a.Stats(); st.Connects != 0 || st.MsgsDropped != 1 {
		t.Fatalf("a stats = %+v, want 0 connects, 1 dropped", st)
	}
}

func TestFrameTooLargeClosesOnlyThatConnection(t *testing.T) {
	dir := newDirectory()
	rec := &recorder{}
	b := startNode(t, dir, "b", func(c *Config) {
		c.MaxFrame = 1024
		c.Handler = rec.handle
	})
	a := startNode(t, dir, "a", nil)
	c := startNode(t, dir, "c", nil)
	c.Send("b", []byte("before"))
	waitFor(t, 5*time.Second, "c's first message", func() bool { return rec.has("c:before") })

	a.Send("b", make([]byte, 2000))
	waitFor(t, 5*time.Second, "b to refuse the frame", func() bool {
		return b.log.contains("lockstep: frame too large")
	})
	c.Send("b", []byte("after"))
	waitFor(t, 5*time.Second, "c's second message", func() bool { return rec.has("c:after") })
	if got := c.Stats().Connects; got != 1 {
		t.Fatalf("c connected %d times, want its connection untouched", got)
	}
	// a's link was closed under it; a reconnects and is heard again.
	waitFor(t, 5*time.Second, "a's small message after reconnecting", func() bool {
		a.Send("b", []byte("small"))
		return rec.has("a:small")
	})
	for _, m := range rec.snapshot() {
		if strings.HasPrefix(m, "a:") && m != "a:small" {
			t.Fatalf("b delivered %.20q from the refused connection", m)
		}
	}
}

func TestSendRefusals(t *testing.T) {
	dir := newDirectory()
	a := startNode(t, dir, "a", func(c *Config) { c.MaxFrame = 10 })
	if a.Send("b", make([]byte, 11)) {
		t.Fatal("Send above MaxFrame accepted")
	}
	if _, err := a.OpenStream(context.Background(), "b", make([]byte, 11)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("OpenStream above MaxFrame: %v, want ErrFrameTooLarge", err)
	}
	if _, err := a.OpenStream(context.Background(), "nobody", nil); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("OpenStream to an unknown peer: %v, want ErrUnknownPeer", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if a.Send("b", nil) {
		t.Fatal("Send after Close accepted")
	}
	if _, err := a.OpenStream(context.Background(), "b", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("OpenStream after Close: %v, want ErrClosed", err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestQueueBound stalls the receiver so that the sender's queue fills: Send
// must refuse beyond QueueBytes, memory must stay flat however much is
// offered, and every accepted message must arrive once the receiver resumes.
func TestQueueBound(t *testing.T) {
	const queue = 256 << 10
	dir := newDirectory()
	release := make(chan struct{})
	cb := newSeqChecker()
	startNode(t, dir, "b", func(c *Config) {
		c.Handler = func(from string, p []byte) {
			<-release
			cb.handle(from, p)
		}
	})
	a := startNode(t, dir, "a", func(c *Config) { c.QueueBytes = queue })
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()

	payload := make([]byte, 1024)
	var accepted uint64
	for ; ; accepted++ {
		if accepted > 1<<20 {
			t.Fatal("Send never refused")
		}
		binary.BigEndian.PutUint64(payload, accepted)
		if !a.Send("b", payload) {
			break
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const offered = 100_000 // 100 MiB
	for i := 0; i < offered; i++ {
		binary.BigEndian.PutUint64(payload, accepted)
		if a.Send("b", payload) {
			accepted++
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 8<<20 {
		t.Fatalf("heap grew by %d bytes while the peer stalled", grew)
	}
	if st := a.Stats(); st.MsgsDropped == 0 {
		t.Fatalf("no drops counted: %+v", st)
	}
	close(release)
	waitFor(t, 10*time.Second, "accepted messages", func() bool { return uint64(cb.total.Load()) == accepted })
	if err := cb.err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("accepted %d of %d KiB offered with a %d KiB queue", accepted, accepted+offered, queue>>10)
}

// TestInboundReplaced checks that a new connection from a peer name replaces
// the old one, as when a peer restarts before its old socket times out.
func TestInboundReplaced(t *testing.T) {
	dir := newDirectory()
	rec := &recorder{}
	b := startNode(t, dir, "b", func(c *Config) { c.Handler = rec.handle })
	old := rawDial(t, b.Addr(), hello{kind: kindMessages, cluster: "test", name: "a"})
	if _, err := old.Write(appendMessage(nil, []byte("old"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the old connection's message", func() bool { return rec.has("a:old") })

	a := startNode(t, dir, "a", nil)
	a.Send("b", []byte("new"))
	waitFor(t, 5*time.Second, "the new connection's message", func() bool { return rec.has("a:new") })
	old.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := old.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("old connection still open after replacement: %v", err)
	}
}

func TestDrop(t *testing.T) {
	dir := newDirectory()
	rec := &recorder{}
	b := startNode(t, dir, "b", func(c *Config) { c.Handler = rec.handle })
	a := startNode(t, dir, "a", nil)
	a.Send("b", []byte("1"))
	waitFor(t, 5*time.Second, "message 1", func() bool { return rec.has("a:1") })

	a.Drop("b") // outbound side
	a.Send("b", []byte("2"))
	waitFor(t, 5*time.Second, "message 2", func() bool { return rec.has("a:2") })
	if got := a.Stats().Connects; got != 2 {
		t.Fatalf("a connected %d times, want 2", got)
	}

	b.Drop("a") // inbound side: a notices and dials again on its next Send
	waitFor(t, 5*time.Second, "message 3 after b dropped a", func() bool {
		a.Send("b", []byte("3"))
		return rec.has("a:3")
	})
	if got := a.Stats().Connects; got != 3 {
		t.Fatalf("a connected %d times, want 3", got)
	}
}

// TestSendDropChurn races Sends from several goroutines with Drops of the
// same peer: nothing may panic or race, and the link must work afterwards.
func TestSendDropChurn(t *testing.T) {
	dir := newDirectory()
	rec := &recorder{}
	startNode(t, dir, "b", func(c *Config) { c.Handler = func(string, []byte) {} })
	a := startNode(t, dir, "a", nil)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := make([]byte, 100)
			for i := range 5000 {
				a.Send("b", payload)
				if i%100 == 0 {
					runtime.Gosched()
				}
			}
		}()
	}
	sent := make(chan struct{})
	go func() {
		wg.Wait()
		close(sent)
	}()
	drops := 0
	for churning := true; churning; {
		select {
		case <-sent:
			churning = false
		default:
			a.Drop("b")
			drops++
			runtime.Gosched()
		}
	}
	if drops == 0 {
		t.Fatal("the senders finished before any Drop")
	}

	b2 := startNode(t, dir, "b2", func(c *Config) { c.Handler = rec.handle })
	dir.set("b", b2.Addr()) // a's next dial of "b" reaches b2, which records
	a.Drop("b")
	waitFor(t, 5*time.Second, "a message after the churn", func() bool {
		a.Send("b", []byte("done"))
		return rec.has("a:done")
	})
}

func TestHandshakeRefusesOtherVersions(t *testing.T) {
	dir := newDirectory()
	b := startNode(t, dir, "b", nil)
	conn, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msg := appendHello(nil, hello{kind: kindMessages, cluster: "test", name: "a"})
	msg[4] = wireVersion + 1
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	err = readStatus(bufio.NewReader(conn))
	if !errors.Is(err, ErrHandshake) || !strings.Contains(err.Error(), "version") {
		t.Fatalf("handshake with another version: %v, want ErrHandshake about the version", err)
	}
	waitFor(t, 5*time.Second, "b to log the refusal", func() bool { return b.log.contains("protocol version") })
}

// rawDial connects to addr and performs the dialler's handshake by hand.
func rawDial(t *testing.T, addr string, h hello) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Write(appendHello(nil, h)); err != nil {
		t.Fatal(err)
	}
	if err := readStatus(bufio.NewReaderSize(conn, 16)); err != nil {
		t.Fatal(err)
	}
	return conn
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
