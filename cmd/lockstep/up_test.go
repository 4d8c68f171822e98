package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLastWords checks what a failed node's exit line quotes from its log:
// the last line, trailing newlines aside, cut at 300 bytes, and nothing
// for an empty or missing log.
func TestLastWords(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	long := strings.Repeat("x", 400)
	for _, tc := range []struct{ path, want string }{
		{write("two", "starting\nlockstep: listen: address already in use\n\n"), "; its log ends: lockstep: listen: address already in use"},
		{write("one", "only line"), "; its log ends: only line"},
		{write("long", "a\n"+long+"\n"), "; its log ends: " + long[:300] + "..."},
		{write("big", strings.Repeat("level=INFO msg=tick\n", 10000)+"lockstep: boom\n"), "; its log ends: lockstep: boom"},
		{write("empty", ""), ""},
		{filepath.Join(dir, "missing"), ""},
	} {
		if got := lastWords(tc.path); got != tc.want {
			t.Errorf("lastWords(%s) = %q, want %q", filepath.Base(tc.path), got, tc.want)
		}
	}
}
