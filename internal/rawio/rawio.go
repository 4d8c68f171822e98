// Package rawio reads and writes sockets with raw system calls.
//
// Go's net package enters every read and write through the scheduler's
// syscall path: the goroutine gives up its processor for the call, and the
// first call after the process was idle wakes the runtime's monitor
// thread (sysmon), which then polls every 20 µs for a millisecond. A
// replica that idles between batches, many times a millisecond, pays for
// that on almost every message: with GOMAXPROCS=1 under a 50-client write
// load, the monitor thread used 12-20% of each chain replica's CPU, and
// waking it another 3-10%.
//
// Sockets are non-blocking, so a read or write never blocks: it returns
// what it could move or EAGAIN at once, and the call needs none of that
// bookkeeping. The connection Wrap returns makes such calls inside
// syscall.RawConn's Read and Write, which wait on the runtime's network
// poller when the socket is not ready and keep deadlines and Close working
// as with the net package. The price is that a goroutine keeps its
// processor during the call; since the call never waits, that costs the
// other goroutines microseconds at most.
package rawio

import (
	"errors"
	"net"
)

// Wrap returns c with Read and Write done by raw system calls where the
// platform and the connection allow it, and c itself otherwise. Callers
// that need the concrete type (a *net.TCPConn's CloseWrite) keep c.
func Wrap(c net.Conn) net.Conn { return wrap(c) }

// ErrWouldBlock: TryWrite cannot write on this connection without waiting
// (it was not wrapped by Wrap, or the platform has no raw calls).
var ErrWouldBlock = errors.New("rawio: write would wait")

// TryWrite writes as much of p as the socket takes now, without waiting
// for room, and returns how much that was: a goroutine that must not
// block (one that releases many replies) writes what fits and leaves the
// rest to one that may. c must come from Wrap; otherwise nothing is
// written and the error is ErrWouldBlock.
func TryWrite(c net.Conn, p []byte) (int, error) { return tryWrite(c, p) }

// Then is what handle tells ReadEach to do next.
type Then uint8

const (
	// Stop ends ReadEach, which returns nil.
	Stop Then = iota
	// Wait reads on, but when the socket is known to be empty, waits for
	// the next arrival without a read(2) that would find nothing.
	Wait
	// Poll reads on and makes that read(2) even if the socket looked
	// empty, as a loop of Reads would: for a caller that holds a partial
	// request and must learn at once if the peer has gone.
	Poll
)

// ReadEach reads c into the buffers next returns and passes the size of
// each read to handle, until handle returns Stop (ReadEach then returns
// nil) or a read fails (its error; io.EOF at the end of the stream). next
// must return a buffer with room.
//
// It saves a system call per request. After a request, a loop of Reads
// makes one more read(2), which finds nothing: the client is waiting for
// the reply. ReadEach runs the whole loop inside one syscall.RawConn.Read
// and reads with recvmsg(2) and TCP_INQ, so the kernel says with each
// read whether anything is left, the end of the stream included; when
// nothing is, it waits on the poller at once. That is safe only inside
// one RawConn.Read: it forgets the readiness it has been told of when it
// starts, but while it runs every arrival after a read is reported.
// Where TCP_INQ is missing (not TCP, not Linux, a kernel before 4.18) it
// reads until EAGAIN as a loop of Reads does.
//
// An error that arrives with the last bytes (a reset) is not announced by
// TCP_INQ; a caller learns of it from its next write, or asks for Poll.
//
// handle runs with the connection's read side held, so it must not read
// from c; Close waits for it to return, so it must return promptly once
// the connection is being torn down. Deadlines end the wait for data as
// they end a Read, but not a run of reads that find data: handle decides
// when to stop.
func ReadEach(c net.Conn, next func() []byte, handle func(n int) Then) error {
	return readEach(c, next, handle)
}

// readLoop is ReadEach for connections without raw calls.
func readLoop(c net.Conn, next func() []byte, handle func(n int) Then) error {
	for {
		n, err := c.Read(next())
		if n > 0 && handle(n) == Stop {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
