package server

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/lockstep/lockstep/node"
	"github.com/lockstep/lockstep/resp"
	"github.com/lockstep/lockstep/statemachine"
)

// streamBackend adds a streaming command, DUMP, to a node: two simple
// replies and a bulk string larger than any buffer of the server's.
type streamBackend struct{ *node.Node }

var big = bytes.Repeat([]byte("x"), 1<<20)

func (b streamBackend) Commands() []statemachine.Command {
	return append(b.Node.Commands(), statemachine.Command{Name: "dump", Arity: -1, Kind: statemachine.KindRead})
}

func (streamBackend) Streams(name string) bool { return name == "dump" }

func (streamBackend) Stream(_ context.Context, args [][]byte, w io.Writer) error {
	for _, b := range [][]byte{resp.AppendSimple(nil, "first"), resp.AppendSimple(nil, "second"), resp.AppendBulk(nil, big)} {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// TestStreamingCommand: the replies before a streaming command go out
// first, then its stream, and the connection closes after it, so a
// command sent behind it gets no reply.
func TestStreamingCommand(t *testing.T) {
	_, addr := startServer(t, func(c *Config) { c.Backend = streamBackend{c.Backend.(*node.Node)} })
	cl := dial(t, addr)
	cl.send("SET k v\r\nDUMP\r\nPING\r\n")
	for _, want := range []string{"OK", "first", "second"} {
		if got := cl.read(); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	v, err := cl.r.ReadValue()
	if err != nil || !bytes.Equal(v.Str, big) {
		t.Fatalf("the bulk string: %d bytes, %v", len(v.Str), err)
	}
	cl.expectClosed()
}
