package resp

import (
	"errors"
	"slices"
	"testing"
)

// result is what a server loop makes of an input stream: the commands
// (a skipped empty command is an empty, non-nil slice), the bytes they
// used, and the protocol error line that ended the stream, if any.
type result struct {
	cmds     [][]string
	consumed int
	err      string
}

// feed plays a server's read loop over data, delivering it in chunks of
// the given sizes (then the rest in one piece) and calling Parse until it
// reports an incomplete command. Before the first 64 deliveries, and every
// power-of-two-th after, the pending bytes move to a fresh buffer and the
// old one is scribbled over, so a Parser that kept pointers into an old
// buffer would be caught.
func feed(t testing.TB, p *Parser, data []byte, chunks ...int) result {
	t.Helper()
	var res result
	var in []byte
	for off, ci := 0, 0; ; ci++ {
		size := len(data) - off
		if ci < len(chunks) {
			size = min(chunks[ci], size)
		}
		if ci < 64 || ci&(ci-1) == 0 { // not always, to keep long feeds linear
			moved := make([]byte, len(in), len(in)+size)
			copy(moved, in)
			for i := range in {
				in[i] = 0xA5
			}
			in = moved
		}
		in = append(in, data[off:off+size]...)
		off += size
		for {
			args, n, err := p.Parse(in)
			if n < 0 || n > len(in) {
				t.Fatalf("Parse(%q) consumed %d of %d bytes", in, n, len(in))
			}
			if err != nil {
				if n != 0 || args != nil {
					t.Fatalf("Parse(%q) = %q, %d with error %v", in, args, n, err)
				}
				res.err = errorLine(t, err)
				return res
			}
			if n == 0 {
				if args != nil {
					t.Fatalf("incomplete Parse(%q) returned args %q", in, args)
				}
				break
			}
			res.cmds = append(res.cmds, toStrings(args))
			res.consumed += n
			in = in[n:]
		}
		if off == len(data) && ci >= len(chunks) {
			return res
		}
	}
}

// errorLine checks err is a protocol error and returns the line a server
// would send for it.
func errorLine(t testing.TB, err error) string {
	t.Helper()
	var pe *ProtocolError
	if !errors.Is(err, ErrProtocol) || !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a protocol error", err, err)
	}
	if pe.Reply() != "ERR "+err.Error() {
		t.Fatalf("Reply() = %q, Error() = %q", pe.Reply(), err.Error())
	}
	return pe.Reply()
}

func toStrings(args [][]byte) []string {
	s := make([]string, 0, len(args))
	for _, a := range args {
		s = append(s, string(a))
	}
	return s
}

func equalResults(a, b result) bool {
	return a.consumed == b.consumed && a.err == b.err &&
		slices.EqualFunc(a.cmds, b.cmds, slices.Equal)
}
