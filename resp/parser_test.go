package resp

import (
	"bytes"
	"flag"
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"time"
)

var seedFlag = flag.Int64("seed", 0, "seed for randomized tests; 0 picks one from the clock")

// skip is how feed records a command Redis skips silently.
var skip = []string{}

func TestParseCommands(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in       string
		cmds     [][]string
		consumed int // -1 means all of in
	}{
		{"set", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n", [][]string{{"SET", "k", "value"}}, -1},
		{"empty bulk", "*2\r\n$3\r\nGET\r\n$0\r\n\r\n", [][]string{{"GET", ""}}, -1},
		{"empty name", "*1\r\n$0\r\n\r\n", [][]string{{""}}, -1},
		{"binary bulk", "*2\r\n$3\r\nGET\r\n$6\r\na\r\nb\x00\n\r\n", [][]string{{"GET", "a\r\nb\x00\n"}}, -1},
		{"zero multibulk", "*0\r\n", [][]string{skip}, -1},
		{"null multibulk", "*-1\r\n", [][]string{skip}, -1},
		{"negative multibulk", "*-7\r\n", [][]string{skip}, -1},
		{"inline", "SET k v\r\n", [][]string{{"SET", "k", "v"}}, -1},
		{"inline lf", "PING\n", [][]string{{"PING"}}, -1},
		{"inline quoted", "SET k \"hello world\"\r\n", [][]string{{"SET", "k", "hello world"}}, -1},
		{"lone lf", "\n", [][]string{skip}, -1},
		{"lone crlf", "\r\n", [][]string{skip}, -1},
		{"blank line", " \t \r\n", [][]string{skip}, -1},
		{"inline star later", "x *1\r\n", [][]string{{"x", "*1"}}, -1},
		{
			"mixed pipeline",
			"PING\r\n*1\r\n$4\r\nPING\r\n\n*0\r\nECHO 'a b'\n*2\r\n$4\r\nECHO\r\n$2\r\n\r\n\r\n",
			[][]string{{"PING"}, {"PING"}, skip, skip, {"ECHO", "a b"}, {"ECHO", "\r\n"}},
			-1,
		},
		{"incomplete header", "*1\r", nil, 0},
		{"incomplete count", "*12", nil, 0},
		{"incomplete bulk header", "*2\r\n$3\r\nGET\r\n$1", nil, 0},
		{"incomplete bulk", "*2\r\n$3\r\nGET\r\n$1\r\nk", nil, 0},
		{"incomplete bulk crlf", "*2\r\n$3\r\nGET\r\n$1\r\nk\r", nil, 0},
		{"incomplete inline", "PING", nil, 0},
		{"incomplete inline cr", "PING\r", nil, 0},
		{"complete then partial", "*1\r\n$4\r\nPING\r\nPI", [][]string{{"PING"}}, 14},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := feed(t, NewParser(DefaultLimits()), []byte(tc.in))
			want := result{cmds: tc.cmds, consumed: tc.consumed}
			if tc.consumed < 0 {
				want.consumed = len(tc.in)
			}
			if !equalResults(got, want) {
				t.Fatalf("parse %q:\n got %+v\nwant %+v", tc.in, got, want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	const pe = "ERR Protocol error: "
	long := strings.Repeat("a", 64<<10)
	digits := strings.Repeat("1", 64<<10)
	for _, tc := range []struct{ in, want string }{
		{"*x\r\n", "invalid multibulk length"},
		{"*\r\n", "invalid multibulk length"},
		{"*01\r\n", "invalid multibulk length"},
		{"*+1\r\n", "invalid multibulk length"},
		{"*-0\r\n", "invalid multibulk length"},
		{"* 1\r\n", "invalid multibulk length"},
		{"*1\rX", "invalid multibulk length"},
		{"*1\n$4\nPING\r\n", "invalid multibulk length"},
		{"*1048577\r\n", "invalid multibulk length"},
		{"*2147483648\r\n", "invalid multibulk length"},
		{"*99999999999999999999\r\n", "invalid multibulk length"},
		{"*1\r\n$x\r\n", "invalid bulk length"},
		{"*1\r\n$\r\n", "invalid bulk length"},
		{"*1\r\n$-1\r\n", "invalid bulk length"},
		{"*1\r\n$03\r\nfoo\r\n", "invalid bulk length"},
		{"*1\r\n$3\rXfoo\r\n", "invalid bulk length"},
		{"*1\r\n$536870913\r\n", "invalid bulk length"},
		{"*1\r\n$1099511627776\r\n", "invalid bulk length"},
		{"*1\r\n$3\r\nfooXY", "invalid bulk length"},
		{"*1\r\n$3\r\nfoo\rX", "invalid bulk length"},
		{"*1\r\n:3\r\n", "expected '$', got ':'"},
		{"*1\r\n\r\n", "expected '$', got '\r'"},
		{"*1\r\n\xff\r\n", "expected '$', got '\xff'"},
		{"*2\r\n$1\r\na\r\nfoo\r\n", "expected '$', got 'f'"},
		{long + "a", "too big inline request"},
		{long + "a\r", "too big inline request"},
		{long + "a\r\n", "too big inline request"},
		{long + "a\n", "too big inline request"},
		{"*" + digits, "too big mbulk count string"},
		{"*" + digits + "\r\n", "too big mbulk count string"},
		{"*1\r\n$" + digits, "too big bulk count string"},
		{"*1\r\n$" + digits + "\r\n", "too big bulk count string"},
		{"SET k \"v\r\n", "unbalanced quotes in request"},
		{"SET k 'v\r\n", "unbalanced quotes in request"},
		{"\"a\"b\r\n", "unbalanced quotes in request"},
		{"'a'b\r\n", "unbalanced quotes in request"},
		{"\"a\\\"\n", "unbalanced quotes in request"},
	} {
		got := feed(t, NewParser(DefaultLimits()), []byte(tc.in))
		if got.err != pe+tc.want || len(got.cmds) != 0 {
			name := tc.in
			if len(name) > 40 {
				name = name[:40] + "..."
			}
			t.Errorf("parse %q: got %+v, want error %q", name, got, pe+tc.want)
		}
	}
}

func TestParseLimitBoundaries(t *testing.T) {
	long := strings.Repeat("a", 64<<10)
	got := feed(t, NewParser(Limits{}), []byte(long+"\r\n"+long+"\n"+long))
	want := result{cmds: [][]string{{long}, {long}}, consumed: 2*len(long) + 3}
	if !equalResults(got, want) {
		t.Fatalf("inline lines of exactly MaxInlineLen: got %d commands, consumed %d, err %q",
			len(got.cmds), got.consumed, got.err)
	}

	small := Limits{MaxBulkLen: 3, MaxArgs: 2, MaxInlineLen: 5}
	for _, tc := range []struct{ in, err string }{
		{"*2\r\n$3\r\nabc\r\n$0\r\n\r\n", ""},
		{"*3\r\n", "ERR Protocol error: invalid multibulk length"},
		{"*1\r\n$4\r\n", "ERR Protocol error: invalid bulk length"},
		{"abcde\r\n", ""},
		{"abcdef", "ERR Protocol error: too big inline request"},
		{"*0002\r\n", "ERR Protocol error: invalid multibulk length"},
		{"*00002\r\n", "ERR Protocol error: too big mbulk count string"}, // the count line with its '*' exceeds 5
		{"*00002", "ERR Protocol error: too big mbulk count string"},
		{"*1\r\n$00003", "ERR Protocol error: too big bulk count string"},
	} {
		if got := feed(t, NewParser(small), []byte(tc.in)); got.err != tc.err {
			t.Errorf("parse %q with %+v: error %q, want %q", tc.in, small, got.err, tc.err)
		}
	}
}

func TestSplitArgs(t *testing.T) {
	for _, tc := range []struct {
		line string
		want []string // nil means unbalanced quotes
	}{
		{"a b  c", []string{"a", "b", "c"}},
		{"  a\t\tb \v\f c  ", []string{"a", "b", "c"}},
		{"a\vb", []string{"a\vb"}},
		{`"a b" c`, []string{"a b", "c"}},
		{`""`, []string{""}},
		{`'' x`, []string{"", "x"}},
		{`"\x41\x4a\x4g\x"`, []string{"AJx4gx"}},
		{`"\n\r\t\b\a\\\"\q"`, []string{"\n\r\t\b\a\\\"q"}},
		{`'it\'s'`, []string{"it's"}},
		{`'a\nb\\x'`, []string{`a\nb\\x`}},
		{`'a\\'`, nil}, // \' is an escaped quote even after a backslash
		{`foo"bar baz"`, []string{"foobar baz"}},
		{`foo'x y'`, []string{"foox y"}},
		{`"a"` + "\t" + `b`, []string{"a", "b"}},
		{`"a"` + "\v" + `b`, []string{"a", "b"}},
		{"a\x00b c", []string{"a"}},
		{"\"a\x00b\"", nil},
		{`"abc`, nil},
		{`'abc`, nil},
		{`"a"b`, nil},
		{`'a'b`, nil},
		{`"a\"`, nil},
		{`'a\'`, nil},
	} {
		p := NewParser(DefaultLimits())
		args, err := p.splitArgs([]byte(tc.line))
		if tc.want == nil {
			if err == nil || errorLine(t, err) != "ERR Protocol error: unbalanced quotes in request" {
				t.Errorf("splitArgs(%q) = %q, %v; want unbalanced quotes", tc.line, args, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(toStrings(args), tc.want) {
			t.Errorf("splitArgs(%q) = %q, %v; want %q", tc.line, args, err, tc.want)
		}
	}
}

// pipeline mixes every kind of command, including binary data, quoting and
// skipped lines, for tests that split input arbitrarily.
const pipeline = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$7\r\nv\r\n\x00\r\nx\r\n" +
	"GET key\r\n" +
	"\n" +
	"*0\r\n" +
	"SET \"a b\" 'c\\'d'\n" +
	"*-1\r\n" +
	"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n" +
	"\r\n" +
	"*1\r\n$4\r\nPING\r\n"

func TestParseSplitAtEveryByte(t *testing.T) {
	inputs := []string{
		pipeline,
		pipeline + "*1\r\n$3\r\nfooXY", // ends with an error
		pipeline + "*1\r\n:1\r\n",      // ends with an error
		pipeline + "SET 'a\r\n",        // ends with an error
		pipeline + "*2\r\n$3\r\nGET\r\n$10\r\n0123456789", // ends incomplete
	}
	for _, in := range inputs {
		want := feed(t, NewParser(DefaultLimits()), []byte(in))
		for k := 0; k <= len(in); k++ {
			got := feed(t, NewParser(DefaultLimits()), []byte(in), k)
			if !equalResults(got, want) {
				t.Fatalf("input %q split at %d:\n got %+v\nwant %+v", in, k, got, want)
			}
		}
		got := feed(t, NewParser(DefaultLimits()), []byte(in), ones(len(in))...)
		if !equalResults(got, want) {
			t.Fatalf("input %q byte by byte:\n got %+v\nwant %+v", in, got, want)
		}
	}
}

func TestParseRandomChunks(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (replay with go test ./resp -run TestParseRandomChunks -seed %d)", seed, seed)
	rng := rand.New(rand.NewSource(seed))
	in := []byte(strings.Repeat(pipeline, 50))
	want := feed(t, NewParser(DefaultLimits()), in)
	for range 200 {
		var chunks []int
		for total := 0; total < len(in); {
			c := rng.Intn(40)
			chunks = append(chunks, c)
			total += c
		}
		if got := feed(t, NewParser(DefaultLimits()), in, chunks...); !equalResults(got, want) {
			t.Fatalf("chunks %v:\n got %+v\nwant %+v", chunks, got, want)
		}
	}
}

func ones(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = 1
	}
	return s
}

func TestParseNeed(t *testing.T) {
	p := NewParser(DefaultLimits())
	head := "*2\r\n$3\r\nSET\r\n$100\r\n"
	if _, n, err := p.Parse([]byte(head[:6])); n != 0 || err != nil || p.Need() != 0 {
		t.Fatalf("before the bulk header: n=%d err=%v Need=%d, want 0, nil, 0", n, err, p.Need())
	}
	if _, n, err := p.Parse([]byte(head + "ab")); n != 0 || err != nil {
		t.Fatalf("partial bulk: n=%d err=%v", n, err)
	}
	if got, want := p.Need(), len(head)+102; got != want {
		t.Fatalf("Need() = %d, want %d", got, want)
	}
	full := head + strings.Repeat("x", 100) + "\r\n"
	if args, n, err := p.Parse([]byte(full)); n != len(full) || err != nil || len(args) != 2 || p.Need() != 0 {
		t.Fatalf("complete: %d args, n=%d err=%v Need=%d", len(args), n, err, p.Need())
	}
}

func TestParseHugeDeclaredLengthsAllocateLittle(t *testing.T) {
	for _, in := range []string{
		"*1\r\n$1099511627776\r\n",
		"*1\r\n$536870912\r\nabc",
		"*1048576\r\n$1\r\na\r\n$1\r\nb\r\n",
		"*1048576\r\n",
	} {
		allocs := testing.AllocsPerRun(10, func() {
			p := NewParser(DefaultLimits())
			_, _, _ = p.Parse([]byte(in))
			if cap(p.offs) > 64 || cap(p.args) > 64 {
				t.Fatalf("parse %q preallocated offs %d, args %d", in, cap(p.offs), cap(p.args))
			}
		})
		if allocs > 6 {
			t.Errorf("parse %q: %v allocations", in, allocs)
		}
	}
}

func TestParseArgsAreCapped(t *testing.T) {
	buf := []byte("*2\r\n$1\r\na\r\n$1\r\nb\r\n")
	args, _, err := NewParser(DefaultLimits()).Parse(buf)
	if err != nil {
		t.Fatal(err)
	}
	_ = append(args[0], "XYZ"...)
	if !bytes.Equal(buf, []byte("*2\r\n$1\r\na\r\n$1\r\nb\r\n")) {
		t.Fatalf("appending to an argument overwrote the buffer: %q", buf)
	}
}

func TestParseZeroAllocs(t *testing.T) {
	batch := setBatch(100)
	p := NewParser(DefaultLimits())
	allocs := testing.AllocsPerRun(20, func() {
		for b := batch; len(b) > 0; {
			args, n, err := p.Parse(b)
			if err != nil || n == 0 || len(args) != 3 {
				t.Fatalf("Parse: %d args, n=%d, err=%v", len(args), n, err)
			}
			b = b[n:]
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch of 100 commands, want 0", allocs)
	}
}

func TestParseResetAndMisuse(t *testing.T) {
	p := NewParser(DefaultLimits())
	if _, n, err := p.Parse([]byte("*2\r\n$3\r\nGET\r\n$5\r\nab")); n != 0 || err != nil {
		t.Fatalf("partial: n=%d err=%v", n, err)
	}
	// A shorter buffer breaks the contract; Parse must not panic.
	_, _, _ = p.Parse([]byte("*2"))
	p.Reset()
	args, n, err := p.Parse([]byte("PING\r\n"))
	if err != nil || n != 6 || len(args) != 1 || string(args[0]) != "PING" {
		t.Fatalf("after Reset: %q, %d, %v", args, n, err)
	}
}

func TestParseLongLineInTinyReads(t *testing.T) {
	// Without resumable scanning this is quadratic: 64 Ki calls, each
	// scanning up to 64 KiB.
	line := strings.Repeat("a", 64<<10) + "\r\n"
	got := feed(t, NewParser(DefaultLimits()), []byte(line), ones(len(line))...)
	if len(got.cmds) != 1 || got.err != "" {
		t.Fatalf("got %d commands, error %q", len(got.cmds), got.err)
	}
}

// setBatch returns n pipelined SET commands in multibulk form.
func setBatch(n int) []byte {
	var b []byte
	for i := range n {
		b = AppendCommandStrings(b, "SET", "key:"+strings.Repeat("0", 6-len(itoa(i)))+itoa(i), "value-0123456789")
	}
	return b
}

func itoa(i int) string { return string(AppendInt(nil, int64(i))[1 : len(AppendInt(nil, int64(i)))-2]) }
