package resp_test

import (
	"errors"
	"fmt"
	"strings"

	"github.com/lockstep/lockstep/resp"
)

// A server's read loop: parse every complete command in the buffer,
// answer it, and keep the incomplete rest for the next read.
func ExampleParser() {
	p := resp.NewParser(resp.DefaultLimits())
	in := []byte("*1\r\n$4\r\nPING\r\nECHO \"hi there\"\r\n*2\r\n$3\r\nGET")
	var out []byte
	for {
		args, n, err := p.Parse(in)
		if err != nil {
			var pe *resp.ProtocolError
			_ = errors.As(err, &pe)
			out = resp.AppendError(out, pe.Reply())
			break // and close the connection
		}
		if n == 0 {
			break // incomplete: read more, then call Parse again on the same bytes
		}
		in = in[n:]
		if len(args) == 0 {
			continue
		}
		switch strings.ToUpper(string(args[0])) {
		case "PING":
			out = resp.AppendSimple(out, "PONG")
		case "ECHO":
			out = resp.AppendBulk(out, args[1])
		}
	}
	fmt.Printf("%q, pending %q\n", out, in)
	// Output: "+PONG\r\n$8\r\nhi there\r\n", pending "*2\r\n$3\r\nGET"
}

// A client encodes commands and decodes replies.
func ExampleReader() {
	cmd := resp.AppendCommandStrings(nil, "SET", "k", "v")
	fmt.Printf("%q\n", cmd)
	r := resp.NewReader(strings.NewReader("+OK\r\n*2\r\n$1\r\nv\r\n$-1\r\n"))
	for range 2 {
		v, err := r.ReadValue()
		if err != nil {
			panic(err)
		}
		fmt.Println(v)
	}
	// Output:
	// "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
	// OK
	// ["v" (nil)]
}
