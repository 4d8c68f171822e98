package resp

import (
	"math"
	"testing"
)

func TestAppendReplies(t *testing.T) {
	for _, tc := range []struct {
		got  []byte
		want string
	}{
		{AppendSimple(nil, "PONG"), "+PONG\r\n"},
		{AppendSimple(nil, "a\r\nb"), "+a  b\r\n"},
		{AppendOK([]byte("x")), "x+OK\r\n"},
		{AppendError(nil, "ERR syntax error"), "-ERR syntax error\r\n"},
		{AppendError(nil, "ERR unknown command 'a\r\nb'"), "-ERR unknown command 'a  b'\r\n"},
		{AppendInt(nil, 0), ":0\r\n"},
		{AppendInt(nil, -42), ":-42\r\n"},
		{AppendInt(nil, math.MinInt64), ":-9223372036854775808\r\n"},
		{AppendBulk(nil, []byte("a\r\nb")), "$4\r\na\r\nb\r\n"},
		{AppendBulk(nil, nil), "$0\r\n\r\n"},
		{AppendBulkString(nil, "hello"), "$5\r\nhello\r\n"},
		{AppendNull(nil), "$-1\r\n"},
		{AppendNullArray(nil), "*-1\r\n"},
		{AppendArray(nil, 3), "*3\r\n"},
		{AppendCommandStrings(nil, "SET", "k", ""), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"},
		{AppendCommand(nil, []byte("GET"), []byte("k")), "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"},
		{AppendCommand(nil), "*0\r\n"},
	} {
		if string(tc.got) != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestAppendCommandParses(t *testing.T) {
	args := [][]byte{[]byte("SET"), []byte("bin\r\n\x00key"), {}, []byte("*1\r\n")}
	buf := AppendCommand(nil, args...)
	got, n, err := NewParser(DefaultLimits()).Parse(buf)
	if err != nil || n != len(buf) {
		t.Fatalf("Parse = %d, %v; want %d, nil", n, err, len(buf))
	}
	if len(got) != len(args) {
		t.Fatalf("got %q, want %q", got, args)
	}
	for i := range args {
		if string(got[i]) != string(args[i]) {
			t.Fatalf("arg %d: got %q, want %q", i, got[i], args[i])
		}
	}
}
