package kv

import (
	"strings"
	"testing"
	"time"
)

// globCases were checked against Redis 7.0 with KEYS.
var globCases = []struct {
	pattern, s string
	want       bool
}{
	{"*", "anything", true},
	{"*", "", false}, // Redis's loop needs a byte; SCAN treats "*" as no filter
	{"", "", true},
	{"", "a", false},
	{"a*", "a", true},
	{"a*", "abc", true},
	{"a*", "ba", false},
	{"*c", "abc", true},
	{"a*c", "ac", true},
	{"a*c", "abcd", false},
	{"a**c", "abbc", true},
	{"h?llo", "hello", true},
	{"h?llo", "hllo", false},
	{"h[ae]llo", "hallo", true},
	{"h[ae]llo", "hillo", false},
	{"h[^e]llo", "hallo", true},
	{"h[^e]llo", "hello", false},
	{"h[a-b]llo", "hbllo", true},
	{"h[b-a]llo", "hallo", true}, // reversed range
	{"h[a-b]llo", "hcllo", false},
	{"[a-c-e]", "d", false},
	{"[a-c-e]", "-", true},
	{`h\*llo`, "h*llo", true},
	{`h\*llo`, "hello", false},
	{`h\?`, "h?", true},
	{`\\`, `\`, true},
	{`[\]]`, "]", true},
	{`[\-]`, "-", true},
	{"[]]", "]", false}, // the first ']' closes an empty class, which matches nothing
	{"[abc", "a", true}, // unterminated class ends at the pattern's end
	{"[abc", "ab", false},
	{"[", "x", false},
	{"[^", "x", true},
	{"x\\", "x\\", true}, // trailing backslash is literal
	{"user:*:name", "user:42:name", true},
	{"user:*:name", "user:42:age", false},
	{"*a*", "bab", true},
	{"?", "", false},
	{"a?", "a", false},
	{"\xff*", "\xff\x00", true},
}

func TestGlobMatch(t *testing.T) {
	for _, tc := range globCases {
		if got := globMatch([]byte(tc.pattern), []byte(tc.s)); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

// TestGlobMatchNoBlowup is Redis's own test for exponential matching: the
// skip-longer-matches rule must fail this in linear-ish time.
func TestGlobMatchNoBlowup(t *testing.T) {
	pattern := []byte(strings.Repeat("a*", 50) + "b")
	s := []byte(strings.Repeat("a", 60))
	start := time.Now()
	if globMatch(pattern, s) {
		t.Fatal("matched")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v", d)
	}
	deep := []byte(strings.Repeat("*x", 2000))
	if globMatch(deep, []byte(strings.Repeat("x", 3000))) {
		t.Fatal("a pattern nesting past the limit matched")
	}
}

func TestLiteralPrefix(t *testing.T) {
	for pat, want := range map[string]string{"": "", "abc": "abc", "ab*": "ab", "a?c": "a", "[ab]": "", `a\*`: "a"} {
		if got := string(literalPrefix([]byte(pat))); got != want {
			t.Errorf("literalPrefix(%q) = %q, want %q", pat, got, want)
		}
	}
}

func FuzzGlobMatch(f *testing.F) {
	f.Add([]byte("h[^a-c]l*o?"), []byte("hello"))
	f.Add([]byte(`[\`), []byte("x"))
	f.Fuzz(func(t *testing.T, pattern, s []byte) {
		m := globMatch(pattern, s)
		// A pattern without metacharacters matches exactly itself.
		if literal := literalPrefix(pattern); len(literal) == len(pattern) && m != (string(pattern) == string(s)) && len(s) > 0 {
			t.Fatalf("literal pattern %q vs %q = %v", pattern, s, m)
		}
	})
}

func TestParseInt(t *testing.T) {
	good := map[string]int64{"0": 0, "1": 1, "-1": -1, "9223372036854775807": 1<<63 - 1, "-9223372036854775808": -1 << 63}
	for s, want := range good {
		if got, ok := parseInt([]byte(s)); !ok || got != want {
			t.Errorf("parseInt(%q) = %d, %v", s, got, ok)
		}
	}
	for _, s := range []string{"", "-", "+1", " 1", "1 ", "01", "-0", "00", "1.0", "9223372036854775808", "-9223372036854775809", "18446744073709551616", "123456789012345678901", "1e3", "0x1"} {
		if got, ok := parseInt([]byte(s)); ok {
			t.Errorf("parseInt(%q) = %d, want failure", s, got)
		}
	}
}

func TestParseCursor(t *testing.T) {
	good := map[string]uint64{"0": 0, "": 0, "-0": 0, "+5": 5, "007": 7, "18446744073709551615": 1<<64 - 1, "-1": 1<<64 - 1}
	for s, want := range good {
		if got, ok := parseCursor([]byte(s)); !ok || got != want {
			t.Errorf("parseCursor(%q) = %d, %v", s, got, ok)
		}
	}
	for _, s := range []string{" 1", "1 ", "+", "-", "x", "18446744073709551616", "1.5"} {
		if _, ok := parseCursor([]byte(s)); ok {
			t.Errorf("parseCursor(%q) succeeded", s)
		}
	}
}
