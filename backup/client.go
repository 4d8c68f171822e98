package backup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/lockstep/lockstep/resp"
)

// ErrConnect: the node could not be reached or refused the password.
var ErrConnect = errors.New("lockstep: cannot talk to the node")

// conn is one RESP connection to a node, for the client side of a backup
// or restore.
type conn struct {
	nc   net.Conn
	rd   *resp.Reader
	bw   *bufio.Writer
	read int64 // bytes read, for progress
	stop func() bool
}

// dial connects to addr and authenticates with password if it is set. The
// connection is closed when ctx ends, so every blocking call on it ends
// with ctx too.
func dial(ctx context.Context, addr, password string) (*conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConnect, err)
	}
	c := &conn{nc: nc, bw: bufio.NewWriterSize(nc, 64<<10)}
	c.rd = resp.NewReaderLimits(&countingReader{r: nc, n: &c.read}, resp.Limits{MaxBulkLen: maxField, MaxArgs: 1 << 22})
	c.stop = context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	if password != "" {
		v, err := c.do("AUTH", password)
		if err == nil && v.Type == '-' {
			err = fmt.Errorf("AUTH: %s", v.Str)
		}
		if err != nil {
			c.close()
			return nil, fmt.Errorf("%w %s: %w", ErrConnect, addr, err)
		}
	}
	return c, nil
}

func (c *conn) close() {
	c.stop()
	_ = c.nc.Close()
}

// send writes one command without waiting for its reply.
func (c *conn) send(args ...string) error {
	if _, err := c.bw.Write(resp.AppendCommandStrings(nil, args...)); err != nil {
		return err
	}
	return c.bw.Flush()
}

// do sends one command and reads its reply.
func (c *conn) do(args ...string) (resp.Value, error) {
	if err := c.send(args...); err != nil {
		return resp.Value{}, err
	}
	return c.rd.ReadValue()
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n *int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
}
