package transport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// streamData is the deterministic content the test servers stream.
func streamData(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	return b[:n]
}

// writeInPieces writes data to w in pieces of varied sizes, as a snapshot
// encoder would.
func writeInPieces(w io.Writer, data []byte) error {
	sizes := []int{1, 7, 4096, 100_000, 65536, 300}
	for i := 0; len(data) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(data))
		if _, err := w.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

func TestStreamLarge(t *testing.T) {
	data := streamData(8 << 20)
	dir := newDirectory()
	startNode(t, dir, "b", func(c *Config) {
		c.Snapshot = func(ctx context.Context, from string, req []byte, w io.Writer) error {
			if from != "a" || string(req) != "snapshot please" {
				return errors.New("unexpected request " + from + " " + string(req))
			}
			return writeInPieces(w, data)
		}
	})
	a := startNode(t, dir, "a", nil)
	s, err := a.OpenStream(context.Background(), "b", []byte("snapshot please"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatalf("ReadAll: %v after %d bytes", err, len(got))
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("stream returned %d bytes that differ from the %d sent", len(got), len(data))
	}
	if _, err := s.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("Read after the end: %v, want io.EOF", err)
	}
}

func TestStreamServerErrorSurfaces(t *testing.T) {
	data := streamData(1 << 20)
	dir := newDirectory()
	startNode(t, dir, "b", func(c *Config) {
		c.Snapshot = func(ctx context.Context, from string, req []byte, w io.Writer) error {
			if err := writeInPieces(w, data); err != nil {
				return err
			}
			return errors.New("disk on fire")
		}
	})
	a := startNode(t, dir, "a", nil)
	s, err := a.OpenStream(context.Background(), "b", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := io.ReadAll(s)
	if !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("ReadAll: %v, want ErrRemote with the server's message", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("got %d bytes before the error, want the %d written", len(got), len(data))
	}
}

func TestStreamWithoutSnapshotHandler(t *testing.T) {
	dir := newDirectory()
	startNode(t, dir, "b", nil)
	a := startNode(t, dir, "a", nil)
	s, err := a.OpenStream(context.Background(), "b", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := io.ReadAll(s); !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), ErrNoSnapshot.Error()) {
		t.Fatalf("ReadAll: %v, want ErrRemote carrying ErrNoSnapshot's text", err)
	}
}

// TestStreamTruncated plays a server that dies mid-chunk: the reader must
// report truncation, not a short stream.
func TestStreamTruncated(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() { served <- serveTruncated(ln) }()
	dir := newDirectory()
	dir.set("b", ln.Addr().String())
	a := startNode(t, dir, "a", nil)
	s, err := a.OpenStream(context.Background(), "b", []byte("req"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := io.ReadAll(s)
	if !errors.Is(err, ErrTruncated) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("ReadAll: %v after %d bytes, want ErrTruncated", err, len(got))
	}
	if string(got) != "0123456789" {
		t.Fatalf("got %q before the cut", got)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

// serveTruncated accepts one stream, announces a 100-byte chunk, sends 10
// bytes of it and closes.
func serveTruncated(ln net.Listener) error {
	conn, err := ln.Accept()
	if err != nil {
		return err
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	if _, err := readHello(r); err != nil {
		return err
	}
	if _, err := conn.Write(appendStatus(nil, statusOK, "")); err != nil {
		return err
	}
	if _, err := readFrame(r, 100); err != nil {
		return err
	}
	chunk := make([]byte, chunkHeaderLen, chunkHeaderLen+10)
	putChunkHeader(chunk, chunkData, 100)
	_, err = conn.Write(append(chunk, "0123456789"...))
	return err
}

func TestStreamCancel(t *testing.T) {
	serverDone := make(chan error, 1)
	dir := newDirectory()
	startNode(t, dir, "b", func(c *Config) {
		c.Snapshot = func(ctx context.Context, from string, req []byte, w io.Writer) error {
			if _, err := w.Write(make([]byte, 1000)); err != nil {
				return err
			}
			select { // stall until the requester gives up
			case <-ctx.Done():
				serverDone <- ctx.Err()
				return ctx.Err()
			case <-time.After(10 * time.Second):
				serverDone <- errors.New("snapshot context never cancelled")
				return nil
			}
		}
	})
	a := startNode(t, dir, "a", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := a.OpenStream(ctx, "b", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	readErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := s.Read(buf); err != nil {
				readErr <- err
				return
			}
		}
	}()
	cancel()
	select {
	case err := <-readErr:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Read after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked 5s after cancel")
	}
	s.Close()
	select {
	case err := <-serverDone:
		if !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server's context not cancelled 5s after the requester left")
	}
}

// TestCloseStopsEverything closes transports with traffic, a stalled
// receiver and an open stream in flight: Close must return and leave no
// goroutine behind (TestMain's goleak check covers the latter).
func TestCloseStopsEverything(t *testing.T) {
	dir := newDirectory()
	stalled := make(chan struct{})
	b := startNode(t, dir, "b", func(c *Config) {
		c.Snapshot = func(ctx context.Context, from string, req []byte, w io.Writer) error {
			close(stalled)
			<-ctx.Done()
			return ctx.Err()
		}
	})
	a := startNode(t, dir, "a", nil)
	for i := 0; i < 1000; i++ {
		a.Send("b", make([]byte, 100))
		b.Send("a", make([]byte, 100))
	}
	sending := make(chan struct{})
	go func() { // Sends racing with Close must stop being accepted
		defer close(sending)
		for a.Send("b", make([]byte, 100)) || !a.isClosed() {
			runtime.Gosched()
		}
	}()
	s, err := a.OpenStream(context.Background(), "b", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	<-stalled
	closed := make(chan error, 2)
	go func() { closed <- a.Close() }()
	go func() { closed <- b.Close() }()
	for range 2 {
		select {
		case err := <-closed:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not return")
		}
	}
	<-sending
	if _, err := io.ReadAll(s); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read on a stream of a closed transport: %v, want ErrClosed", err)
	}
}
