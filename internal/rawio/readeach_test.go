package rawio

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestReadEachStreamsToEOF checks that ReadEach hands over every byte of a
// stream far larger than its buffer, in order, and ends with io.EOF.
func TestReadEachStreamsToEOF(t *testing.T) {
	c, s := pair(t)
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	go func() {
		_, _ = s.Write(want)
		s.Close()
	}()
	buf := make([]byte, 4096)
	var got []byte
	err := ReadEach(c, func() []byte { return buf }, func(n int) Then {
		got = append(got, buf[:n]...)
		return Wait
	})
	if !errors.Is(err, io.EOF) || !bytes.Equal(got, want) {
		t.Fatalf("ReadEach = %v with %d of %d bytes (equal %t); want io.EOF and all of them", err, len(got), len(want), bytes.Equal(got, want))
	}
}

// pingPong has the peer send "ping <i>\n" and wait for the reply before the
// next, rounds times, while loop answers each ping from handle. It returns
// the number of read-side system calls loop made.
func pingPong(t *testing.T, rounds int, loop func(c net.Conn, next func() []byte, handle func(int) Then) error) int {
	t.Helper()
	c, s := pair(t)
	done := make(chan error, 1)
	go func() {
		r := bufio.NewReader(s)
		for i := range rounds {
			if _, err := s.Write([]byte("ping " + strconv.Itoa(i) + "\n")); err != nil {
				done <- err
				return
			}
			line, err := r.ReadString('\n')
			if err != nil || line != "pong "+strconv.Itoa(i)+"\n" {
				done <- errors.New("bad reply " + strconv.Quote(line))
				return
			}
		}
		done <- nil
	}()
	buf := make([]byte, 512)
	seen := 0
	handle := func(n int) Then {
		for _, line := range strings.SplitAfter(string(buf[:n]), "\n") {
			if line == "" {
				continue
			}
			if _, err := c.Write([]byte("pong " + strings.TrimPrefix(line, "ping "))); err != nil {
				return Stop
			}
			seen++
		}
		if seen == rounds {
			return Stop
		}
		return Wait
	}
	if err := c.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := loop(c, func() []byte { return buf }, handle); err != nil {
		t.Fatalf("after %d of %d pings: %v", seen, rounds, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return c.(*conn).reads
}

// TestReadEachWaitsWithoutAnEmptyRead checks the point of ReadEach: a
// client that waits for each reply costs one read(2) per request, where
// a loop of Reads makes a second one that finds nothing. No arrival may
// be missed while it waits (the exchange would stall until the deadline).
func TestReadEachWaitsWithoutAnEmptyRead(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("raw calls are Linux only")
	}
	const rounds = 2000
	each := pingPong(t, rounds, ReadEach)
	loop := pingPong(t, rounds, readLoop)
	t.Logf("read calls for %d requests: ReadEach %d, a loop of Reads %d", rounds, each, loop)
	if each > loop-rounds/2 {
		t.Fatalf("ReadEach made %d read calls, a loop of Reads %d: want about %d fewer", each, loop, rounds)
	}
}

// TestReadEachStopsWhenHandleSaysSo checks that handle's false ends
// ReadEach with no error and leaves the rest of the input unread.
func TestReadEachStopsWhenHandleSaysSo(t *testing.T) {
	c, s := pair(t)
	if _, err := s.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	calls := 0
	err := ReadEach(c, func() []byte { return buf }, func(n int) Then { calls++; return Stop })
	if err != nil || calls != 1 {
		t.Fatalf("ReadEach = %v after %d calls; want nil after 1", err, calls)
	}
	rest := make([]byte, 2)
	if _, err := io.ReadFull(c, rest); err != nil || string(rest) != "bc" {
		t.Fatalf("the rest read as %q, %v", rest, err)
	}
}

// TestReadEachDeadlineEndsTheWait checks that a read deadline ends
// ReadEach's wait for data as it ends a Read, with a timeout error.
func TestReadEachDeadlineEndsTheWait(t *testing.T) {
	c, _ := pair(t)
	if err := c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	err := ReadEach(c, func() []byte { return buf }, func(int) Then { return Wait })
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadEach past its deadline = %v, want a timeout", err)
	}
}

// TestReadEachSeesEOFWithTheLastBytes checks the case a plain "stop
// after a short read" gets wrong: a peer that sends its last request and
// closes at once. The FIN often arrives before the read that takes the
// bytes, its readiness merges with theirs, and only TCP_INQ tells that a
// read is still owed; without it ReadEach would wait forever.
func TestReadEachSeesEOFWithTheLastBytes(t *testing.T) {
	for i := range 200 {
		c, s := pair(t)
		go func() {
			_, _ = s.Write([]byte("last\n"))
			s.Close()
		}()
		if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		got := 0
		err := ReadEach(c, func() []byte { return buf }, func(n int) Then { got += n; return Wait })
		if !errors.Is(err, io.EOF) || got != 5 {
			t.Fatalf("connection %d: ReadEach = %v after %d bytes; want io.EOF after 5", i, err, got)
		}
	}
}
