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
