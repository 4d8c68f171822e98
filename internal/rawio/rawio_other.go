//go:build !linux

package rawio

import "net"

func wrap(c net.Conn) net.Conn { return c }

func tryWrite(net.Conn, []byte) (int, error) { return 0, ErrWouldBlock }

func readEach(c net.Conn, next func() []byte, handle func(n int) Then) error {
	return readLoop(c, next, handle)
}
