package rawio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// pair returns a wrapped client end and the plain server end of a
// loopback TCP connection.
func pair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return Wrap(c), s
}

func TestWrapUsesRawCallsOnLinux(t *testing.T) {
	c, _ := pair(t)
	_, raw := c.(*conn)
	if want := runtime.GOOS == "linux"; raw != want {
		t.Fatalf("wrapped as raw: %v, want %v on %s", raw, want, runtime.GOOS)
	}
	p1, p2 := net.Pipe() // no file descriptor behind it
	defer p1.Close()
	defer p2.Close()
	if Wrap(p1) != p1 {
		t.Fatal("a connection without a file descriptor must come back as it was")
	}
}

// A write far larger than the socket buffers completes only as the peer
// reads: the raw write must wait on the poller and resume where it was.
func TestLargeWriteAndReadRoundTrip(t *testing.T) {
	c, s := pair(t)
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	var wg sync.WaitGroup
	wg.Add(1)
	var n int
	var werr error
	go func() {
		defer wg.Done()
		n, werr = c.Write(want)
	}()
	got, err := io.ReadAll(io.LimitReader(s, int64(len(want))))
	wg.Wait()
	if werr != nil || n != len(want) {
		t.Fatalf("Write = %d, %v; want %d, nil", n, werr, len(want))
	}
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("peer read %d bytes (err %v), not the %d written", len(got), err, len(want))
	}
	// And the other way: reads wait for data and return what came.
	go func() { _, _ = s.Write(want[:100]) }()
	buf := make([]byte, 100)
	if _, err := io.ReadFull(c, buf); err != nil || !bytes.Equal(buf, want[:100]) {
		t.Fatalf("ReadFull = %q, %v", buf, err)
	}
}

func TestEOFAfterPeerCloses(t *testing.T) {
	c, s := pair(t)
	if _, err := s.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "bye" {
		t.Fatalf("ReadAll = %q, %v; want \"bye\", nil (io.EOF ends it)", got, err)
	}
	n, err := c.Read(make([]byte, 8))
	if n != 0 || err != io.EOF {
		t.Fatalf("Read after EOF = %d, %v; want 0, io.EOF", n, err)
	}
}

func TestReadDeadlineIsATimeout(t *testing.T) {
	c, _ := pair(t)
	if err := c.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Read(make([]byte, 8))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline = %v; want a net.Error timeout", err)
	}
}

func TestCloseUnblocksARead(t *testing.T) {
	c, _ := pair(t)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 8))
		errc <- err
	}()
	time.AfterFunc(20*time.Millisecond, func() { c.Close() })
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read on a closed connection = %v; want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end a blocked Read")
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close = %v; want net.ErrClosed", err)
	}
}

// Writing to a peer that has gone reports the kernel's error, as a
// net.OpError around the errno, and never kills the process with SIGPIPE.
func TestWriteToAResetPeerFails(t *testing.T) {
	c, s := pair(t)
	if tc, ok := s.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // close with a reset
	}
	s.Close()
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for err == nil && time.Now().Before(deadline) {
		_, err = c.Write([]byte("are you there?"))
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "write" {
		t.Fatalf("Write to a reset peer = %v; want a write *net.OpError", err)
	}
	var se *os.SyscallError
	if !errors.As(err, &se) {
		t.Fatalf("Write error %v does not carry the system call's errno", err)
	}
}

// Reads and writes allocate nothing: they run for every request and every
// reply, and a closure per call showed up as a third of the head's
// allocations.
func TestReadWriteDoNotAllocate(t *testing.T) {
	c, s := pair(t)
	msg, buf := []byte("ping"), make([]byte, 64)
	echo := func() {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(s, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
	}
	echo()
	if n := testing.AllocsPerRun(200, echo); n > 0 {
		t.Fatalf("a write and a read on the wrapped conn allocate %.1f times; want 0", n)
	}
}

// A deadline in the past stops reads even while data is waiting, as with
// the net package: the server's shutdown relies on it to stop a client
// that keeps sending.
func TestPastDeadlineWinsOverWaitingData(t *testing.T) {
	c, s := pair(t)
	if _, err := s.Write([]byte("more")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(c, buf); err != nil { // the data has arrived
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now()); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(buf); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline with data waiting = %d, %v; want 0, a timeout", n, err)
	}
}

// TryWrite takes what the socket has room for and returns at once; the
// rest is the caller's to write.
func TestTryWriteStopsAtAFullSocket(t *testing.T) {
	c, s := pair(t)
	// A fixed receive buffer turns off autotuning, so the two socket
	// buffers together hold a few MiB at most.
	if err := s.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), 24<<20)
	done := make(chan struct{})
	var n int
	var err error
	go func() {
		defer close(done)
		n, err = TryWrite(c, big)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("TryWrite waited for the peer to read")
	}
	if runtime.GOOS != "linux" {
		if !errors.Is(err, ErrWouldBlock) || n != 0 {
			t.Fatalf("TryWrite = %d, %v; want 0, ErrWouldBlock off Linux", n, err)
		}
		return
	}
	if err != nil || n == 0 || n >= len(big) {
		t.Fatalf("TryWrite = %d, %v; want part of the %d bytes, nil", n, err, len(big))
	}
	// The rest goes with a normal Write while the peer reads.
	go func() { _, _ = c.Write(big[n:]) }()
	got, err := io.ReadAll(io.LimitReader(s, int64(len(big))))
	if err != nil || len(got) != len(big) {
		t.Fatalf("peer read %d bytes, %v; want %d", len(got), err, len(big))
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if n, err := TryWrite(p1, []byte("x")); n != 0 || !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("TryWrite on an unwrapped conn = %d, %v; want 0, ErrWouldBlock", n, err)
	}
}
