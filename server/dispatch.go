package server

import (
	"bufio"
	"io"
	"net"
	"time"

	"github.com/lockstep/lockstep/resp"
	"github.com/lockstep/lockstep/statemachine"
)

// command is one entry of the dispatch table: either a connection-level
// handler the server runs itself or a data command for the Backend.
type command struct {
	info    statemachine.Command
	handler func(c *conn, args [][]byte) // nil for data commands
	stream  bool                         // a data command the Backend streams (Streamer)
	calls   counter
}

// counter is the slice of Metrics a command bumps; nil-safe.
type counter interface{ Inc() }

type noCounter struct{}

func (noCounter) Inc() {}

// buildTable merges the backend's data commands with the server's own.
// Lookups index it with a lower-cased byte slice, which Go does without
// allocating.
func buildTable(b Backend, m *Metrics) map[string]*command {
	data := b.Commands()
	streamer, _ := b.(Streamer)
	t := make(map[string]*command, len(data)+len(connCommands))
	for _, info := range data {
		t[info.Name] = &command{info: info, stream: streamer != nil && streamer.Streams(info.Name)}
	}
	for _, cc := range connCommands {
		t[cc.info.Name] = &command{info: cc.info, handler: cc.handler}
	}
	for name, cmd := range t {
		cmd.calls = m.commandCounter(name)
	}
	return t
}

// lookup finds args[0] in the table, case-insensitively.
func (c *conn) lookup(name []byte) *command {
	c.lower = append(c.lower[:0], name...)
	for i, b := range c.lower {
		if 'A' <= b && b <= 'Z' {
			c.lower[i] = b + ('a' - 'A')
		}
	}
	return c.srv.table[string(c.lower)]
}

// dispatch runs one command and appends its reply to c.out.
func (c *conn) dispatch(args [][]byte) {
	c.srv.commands.Add(1)
	cmd := c.lookup(args[0])
	if cmd == nil {
		c.out = resp.AppendError(c.out, resp.UnknownCommandError(args))
		return
	}
	if !c.authed && !preAuth(cmd.info.Name) {
		c.out = resp.AppendError(c.out, "NOAUTH Authentication required.")
		return
	}
	if !arityOK(cmd.info.Arity, len(args)) {
		c.out = resp.AppendError(c.out, resp.ArityError(cmd.info.Name))
		return
	}
	cmd.calls.Inc()
	switch {
	case cmd.handler != nil:
		cmd.handler(c, args)
	case cmd.stream:
		c.runStream(args)
	default:
		c.runData(cmd.info.Kind, args)
	}
}

// streamWriteTimeout bounds one write of a stream, so a client that stops
// reading does not hold the stream's resources (an open snapshot) forever.
const streamWriteTimeout = time.Minute

// runStream hands the connection to a streaming command (see Streamer)
// once the replies before it are out, and closes the connection after it.
func (c *conn) runStream(args [][]byte) {
	c.quit = true
	if err := c.flush(false); err != nil {
		c.srv.cfg.Logger.Debug("client write", "id", c.id, "err", err)
		return
	}
	dw := &deadlineWriter{c: c.nc, w: c.rw}
	bw := bufio.NewWriterSize(dw, 64<<10)
	err := c.srv.cfg.Backend.(Streamer).Stream(c.ctx, args, bw)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		c.srv.cfg.Logger.Debug("client stream", "id", c.id, "cmd", string(args[0]), "err", err)
	}
}

// deadlineWriter sets a write deadline before every write.
type deadlineWriter struct {
	c net.Conn
	w io.Writer
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	_ = d.c.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	return d.w.Write(p)
}

// runData sends a data command to the backend.
func (c *conn) runData(kind statemachine.Kind, args [][]byte) {
	var (
		gate uint64
		err  error
	)
	b := c.srv.cfg.Backend
	if kind == statemachine.KindWrite {
		c.out, gate, err = b.Write(args, c.out)
	} else {
		c.out, gate, err = b.Read(args, c.out)
	}
	if err != nil {
		c.out = resp.AppendError(c.out, "ERR "+err.Error())
		return
	}
	if gate > c.gate {
		c.gate = gate
	}
}

func arityOK(arity, n int) bool {
	if arity >= 0 {
		return n == arity
	}
	return n >= -arity
}

// preAuth lists the commands a client may send before AUTH, as Redis does.
func preAuth(name string) bool {
	return name == "auth" || name == "hello" || name == "quit"
}
