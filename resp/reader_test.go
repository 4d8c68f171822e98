package resp

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
)

func TestReadValue(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // Value.String of each reply, joined by " | "
	}{
		{"+OK\r\n", "OK"},
		{"+\r\n", ""},
		{"-ERR bad thing\r\n", "(error) ERR bad thing"},
		{":-12\r\n", "(integer) -12"},
		{":9223372036854775807\r\n", "(integer) 9223372036854775807"},
		{"$5\r\nhello\r\n", `"hello"`},
		{"$4\r\na\r\nb\r\n", `"a\r\nb"`},
		{"$0\r\n\r\n", `""`},
		{"$-1\r\n", "(nil)"},
		{"*-1\r\n", "(nil array)"},
		{"*0\r\n", "[]"},
		{"*3\r\n:1\r\n$1\r\na\r\n*2\r\n+x\r\n$-1\r\n", `[(integer) 1 "a" [x (nil)]]`},
		{"+a\r\n:1\r\n$1\r\nb\r\n", `a | (integer) 1 | "b"`},
		{"+" + strings.Repeat("x", 10000) + "\r\n", strings.Repeat("x", 10000)},
	} {
		r := NewReader(strings.NewReader(tc.in))
		var got []string
		for {
			v, err := r.ReadValue()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("ReadValue(%q): %v", tc.in, err)
			}
			got = append(got, v.String())
		}
		if s := strings.Join(got, " | "); s != tc.want {
			t.Errorf("ReadValue(%q) = %s, want %s", tc.in, s, tc.want)
		}
	}
}

func TestReadValueErrors(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want error
	}{
		{"", io.EOF},
		{"+OK", io.ErrUnexpectedEOF},
		{"+OK\r", io.ErrUnexpectedEOF},
		{"*2\r\n:1\r\n", io.ErrUnexpectedEOF},
		{"$5\r\nhel", io.ErrUnexpectedEOF},
		{"$536870912\r\nabc", io.ErrUnexpectedEOF},
		{"+OK\n", ErrProtocol},
		{"\r\n", ErrProtocol},
		{"!x\r\n", ErrProtocol},
		{"_\r\n", ErrProtocol},
		{":abc\r\n", ErrProtocol},
		{":\r\n", ErrProtocol},
		{"$x\r\n", ErrProtocol},
		{"$-2\r\n", ErrProtocol},
		{"$536870913\r\n", ErrProtocol},
		{"$1099511627776\r\n", ErrProtocol},
		{"$3\r\nabcde", ErrProtocol},
		{"*x\r\n", ErrProtocol},
		{"*1048577\r\n", ErrProtocol},
		{strings.Repeat("*1\r\n", maxDepth+1) + ":1\r\n", ErrProtocol},
		{"+" + strings.Repeat("x", 64<<10+1) + "\r\n", ErrProtocol},
	} {
		_, err := NewReader(strings.NewReader(tc.in)).ReadValue()
		if !errors.Is(err, tc.want) {
			in := tc.in
			if len(in) > 40 {
				in = in[:40] + "..."
			}
			t.Errorf("ReadValue(%q) error = %v, want %v", in, err, tc.want)
		}
	}
}

func TestReadValueNesting(t *testing.T) {
	in := strings.Repeat("*1\r\n", maxDepth) + ":1\r\n"
	v, err := NewReader(strings.NewReader(in)).ReadValue()
	if err != nil {
		t.Fatalf("nesting %d deep: %v", maxDepth, err)
	}
	for range maxDepth {
		v = v.Array[0]
	}
	if v.Type != ':' || v.Int != 1 {
		t.Fatalf("innermost value %v", v)
	}
}

func TestReadValueLimits(t *testing.T) {
	l := Limits{MaxBulkLen: 4, MaxArgs: 2, MaxInlineLen: 8}
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"$4\r\nabcd\r\n", true},
		{"$5\r\nabcde\r\n", false},
		{"*2\r\n:1\r\n:2\r\n", true},
		{"*3\r\n:1\r\n:2\r\n:3\r\n", false},
		{"+1234567\r\n", true},
		{"+12345678\r\n", false},
	} {
		_, err := NewReaderLimits(strings.NewReader(tc.in), l).ReadValue()
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrProtocol)) {
			t.Errorf("ReadValue(%q) with %+v: %v", tc.in, l, err)
		}
	}
}

func TestReaderRoundTrip(t *testing.T) {
	values := []Value{
		{Type: '+', Str: []byte("OK")},
		{Type: '-', Str: []byte("ERR oops")},
		{Type: ':', Int: -1 << 63},
		{Type: '$', Str: []byte("bin\r\n\x00")},
		{Type: '$', Str: []byte{}},
		{Type: '$', Null: true},
		{Type: '*', Null: true},
		{Type: '*', Array: []Value{}},
		{Type: '*', Array: []Value{
			{Type: ':', Int: 7},
			{Type: '*', Array: []Value{{Type: '$', Str: []byte("x")}, {Type: '$', Null: true}}},
		}},
	}
	var buf []byte
	for _, v := range values {
		buf = AppendValue(buf, v)
	}
	r := NewReader(bytes.NewReader(buf))
	for _, want := range values {
		got, err := r.ReadValue()
		if err != nil || !equalValues(got, want) {
			t.Fatalf("ReadValue = %v, %v; want %v", got, err, want)
		}
	}
	if _, err := r.ReadValue(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last reply: %v, want io.EOF", err)
	}
}

func TestReaderHugeDeclaredLengthsAllocateLittle(t *testing.T) {
	for _, in := range []string{
		"$536870912\r\nabc",
		"*1048576\r\n:1\r\n",
		strings.Repeat("*1048576\r\n", maxDepth) + ":1\r\n",
	} {
		got := allocatedBy(func() { _, _ = NewReader(strings.NewReader(in)).ReadValue() })
		t.Logf("ReadValue(%.20q...) allocated %d bytes", in, got)
		if got > 512<<10 {
			t.Errorf("ReadValue(%.20q...) allocated %d bytes", in, got)
		}
	}
}

// allocatedBy returns the bytes allocated while f runs.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func equalValues(a, b Value) bool {
	if a.Type != b.Type || a.Null != b.Null || a.Int != b.Int || !bytes.Equal(a.Str, b.Str) ||
		len(a.Array) != len(b.Array) {
		return false
	}
	for i := range a.Array {
		if !equalValues(a.Array[i], b.Array[i]) {
			return false
		}
	}
	return true
}

func TestValueString(t *testing.T) {
	v := Value{Type: '*', Array: []Value{
		{Type: '-', Str: []byte("ERR x")},
		{Type: '$', Str: []byte("\x00")},
		{Type: 'x'},
	}}
	if got, want := v.String(), `[(error) ERR x "\x00" (invalid type 'x')]`; got != want {
		t.Fatalf("String() = %s, want %s", got, want)
	}
}
