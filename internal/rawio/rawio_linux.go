//go:build linux

package rawio

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// conn overrides Read and Write of the connection it embeds; everything
// else, deadlines and Close included, is the embedded net.Conn's.
//
// The functions RawConn calls are built once, in wrap, and read their
// arguments from the conn: a closure per call would cost a heap
// allocation on every read and write. Each direction's mutex keeps
// concurrent callers (which net.Conn allows) from sharing that state.
type conn struct {
	net.Conn
	rc syscall.RawConn

	rmu    sync.Mutex
	rbuf   []byte
	rn     int
	rerrno syscall.Errno
	readFn func(fd uintptr) bool

	// ReadEach's recvmsg(2) state, guarded by rmu like the fields above.
	inqTried, inq bool
	msg           syscall.Msghdr
	iov           syscall.Iovec
	cmsg          [4]uint64 // one cmsghdr and its int32, 8-byte aligned
	reads         int       // read-side system calls, for tests

	wmu     sync.Mutex
	wbuf    []byte
	wn      int
	werrno  syscall.Errno
	wtry    bool // stop at a full socket instead of waiting
	writeFn func(fd uintptr) bool
}

func wrap(c net.Conn) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	w := &conn{Conn: c, rc: rc}
	w.readFn, w.writeFn = w.read, w.write
	return w
}

// maxIO caps one call, as the net package does, so a huge buffer cannot
// hold the processor for long.
const maxIO = 1 << 30

func (c *conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rbuf, c.rn, c.rerrno = p[:min(len(p), maxIO)], 0, 0
	err := c.rc.Read(c.readFn)
	n, errno := c.rn, c.rerrno
	c.rbuf = nil
	if err := c.readErr(err, errno, n == 0); err != nil {
		return 0, err
	}
	return n, nil
}

// readErr is the error a read ends with: RawConn's own (a deadline, a
// close), the errno of read(2), io.EOF at the end of the stream, or nil.
func (c *conn) readErr(err error, errno syscall.Errno, eof bool) error {
	switch {
	case err != nil:
		return c.opError("read", err)
	case errno != 0:
		return c.opError("read", os.NewSyscallError("read", errno))
	case eof:
		return io.EOF
	}
	return nil
}

// read makes one read(2), retrying on EINTR; false asks RawConn to wait
// for the socket to become readable.
func (c *conn) read(fd uintptr) bool {
	p := c.rbuf
	for {
		c.reads++
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.rn, c.rerrno = int(r), e
		return true
	}
}

func readEach(nc net.Conn, next func() []byte, handle func(n int) Then) error {
	c, ok := nc.(*conn)
	if !ok {
		return readLoop(nc, next, handle)
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.enableInq()
	var errno syscall.Errno
	eof, stopped := false, false
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			p := next()
			if len(p) == 0 {
				errno = syscall.ENOBUFS // next broke its contract
				return true
			}
			n, more, e := c.recv(fd, p)
			switch {
			case e == syscall.EINTR:
				continue
			case e == syscall.EAGAIN:
				return false
			case e != 0:
				errno = e
				return true
			case n == 0:
				eof = true
				return true
			}
			switch handle(n) {
			case Stop:
				stopped = true
				return true
			case Wait:
				if !more && n < len(p) {
					return false // nothing left: wait for the next arrival
				}
			}
		}
	})
	if stopped {
		return nil
	}
	return c.readErr(err, errno, eof)
}

// tcpInq is Linux's TCP_INQ socket option, and the type of the control
// message it adds to every recvmsg: the bytes left to read, or 1 after
// the peer's FIN even when none are.
const tcpInq = 36

// enableInq turns on TCP_INQ once; it fails harmlessly on sockets that
// are not TCP and on kernels before 4.18.
func (c *conn) enableInq() {
	if c.inqTried {
		return
	}
	c.inqTried = true
	_ = c.rc.Control(func(fd uintptr) {
		c.inq = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpInq, 1) == nil
	})
	if c.inq { // recv's header, built once: only the lengths change per call
		c.msg = syscall.Msghdr{Iov: &c.iov, Iovlen: 1, Control: (*byte)(unsafe.Pointer(&c.cmsg[0]))}
	}
}

// recv reads into p and reports whether the kernel says more is waiting
// (always true without TCP_INQ, so the caller reads until EAGAIN).
func (c *conn) recv(fd uintptr, p []byte) (n int, more bool, errno syscall.Errno) {
	c.reads++
	if !c.inq {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		return int(r), true, e
	}
	c.iov.Base = &p[0]
	c.iov.SetLen(len(p))
	c.msg.SetControllen(int(unsafe.Sizeof(c.cmsg))) // the kernel shrinks it to what it wrote
	c.msg.Flags = 0
	r, _, e := syscall.RawSyscall(syscall.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&c.msg)), 0)
	c.iov.Base = nil
	if e != 0 {
		return 0, false, e
	}
	more = true
	h := (*syscall.Cmsghdr)(unsafe.Pointer(&c.cmsg[0]))
	if uint64(c.msg.Controllen) >= uint64(syscall.CmsgLen(4)) && h.Level == syscall.IPPROTO_TCP && h.Type == tcpInq {
		more = *(*int32)(unsafe.Add(unsafe.Pointer(&c.cmsg[0]), syscall.CmsgLen(0))) != 0
	}
	return int(r), more, 0
}

func (c *conn) Write(p []byte) (int, error) { return c.writeSome(p, false) }

// writeSome writes p, waiting for room in the socket unless try is set.
func (c *conn) writeSome(p []byte, try bool) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf, c.wn, c.werrno, c.wtry = p, 0, 0, try
	err := c.rc.Write(c.writeFn)
	n, errno := c.wn, c.werrno
	c.wbuf = nil
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// write makes write(2) calls until all of wbuf is written or the socket
// is full (false: RawConn waits until it is writable and calls again).
func (c *conn) write(fd uintptr) bool {
	p := c.wbuf
	for c.wn < len(p) {
		chunk := min(len(p)-c.wn, maxIO)
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[c.wn])), uintptr(chunk))
		switch e {
		case 0:
			c.wn += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return c.wtry
		default:
			c.werrno = e
			return true
		}
	}
	return true
}

func tryWrite(c net.Conn, p []byte) (int, error) {
	w, ok := c.(*conn)
	if !ok {
		return 0, ErrWouldBlock
	}
	return w.writeSome(p, true)
}

// opError wraps err as the net package would, so callers' checks for
// timeouts, net.ErrClosed and connection resets see the same errors.
func (c *conn) opError(op string, err error) error {
	var raw *net.OpError
	if errors.As(err, &raw) {
		err = raw.Err // RawConn's own "raw-read" wrapping
	}
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
