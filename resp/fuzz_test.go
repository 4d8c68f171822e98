package resp

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"
)

// The seed corpora live in testdata/fuzz/FuzzParse and testdata/fuzz/FuzzReader;
// plain "go test" runs them as regression tests.

// fuzzLimits are small enough for the fuzzer to reach every limit.
var fuzzLimits = Limits{MaxBulkLen: 16, MaxArgs: 4, MaxInlineLen: 12}

// FuzzParse checks that Parse never panics or overreads, that every parsed
// command survives re-encoding with AppendCommand, and that delivering the
// input in two pieces, split at split, gives the same commands and error as
// delivering it whole.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, split uint) {
		for _, l := range []Limits{DefaultLimits(), fuzzLimits} {
			whole := feed(t, NewParser(l), data)
			if whole.consumed > len(data) {
				t.Fatalf("consumed %d of %d bytes", whole.consumed, len(data))
			}
			k := int(split % uint(len(data)+1))
			if got := feed(t, NewParser(l), data, k); !equalResults(got, whole) {
				t.Fatalf("limits %+v, split at %d:\n got %+v\nwant %+v", l, k, got, whole)
			}
			for _, cmd := range whole.cmds {
				if len(cmd) > 0 {
					checkReencode(t, cmd)
				}
			}
		}
	})
}

func checkReencode(t *testing.T, cmd []string) {
	t.Helper()
	enc := AppendCommandStrings(nil, cmd...)
	args, n, err := NewParser(DefaultLimits()).Parse(enc)
	if err != nil || n != len(enc) || !slices.Equal(toStrings(args), cmd) {
		t.Fatalf("re-encoded %q parses as %q, %d of %d bytes, %v", cmd, args, n, len(enc), err)
	}
}

// FuzzReader checks that ReadValue never panics, fails only with io.EOF,
// io.ErrUnexpectedEOF or a protocol error, allocates in proportion to its
// input however large the lengths it declares, and that what it reads
// survives AppendValue.
func FuzzReader(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var vals []Value
		var readErr error
		alloc := allocatedBy(func() {
			r := NewReader(bytes.NewReader(data))
			for {
				v, err := r.ReadValue()
				if err != nil {
					readErr = err
					return
				}
				vals = append(vals, v)
			}
		})
		if !errors.Is(readErr, io.EOF) && !errors.Is(readErr, io.ErrUnexpectedEOF) && !errors.Is(readErr, ErrProtocol) {
			t.Fatalf("unexpected error %v", readErr)
		}
		if bound := uint64(1<<20 + 256*len(data)); alloc > bound {
			t.Fatalf("%d bytes of input allocated %d bytes, bound %d", len(data), alloc, bound)
		}
		var enc []byte
		var kept []Value
		for _, v := range vals {
			if !hasCR(v) { // AppendValue turns a '\r' inside a line into a space
				enc = AppendValue(enc, v)
				kept = append(kept, v)
			}
		}
		r := NewReader(bytes.NewReader(enc))
		for _, want := range kept {
			if got, err := r.ReadValue(); err != nil || !equalValues(got, want) {
				t.Fatalf("re-encoded %v reads as %v, %v", want, got, err)
			}
		}
	})
}

// hasCR reports whether a simple string or error in v holds a '\r'.
func hasCR(v Value) bool {
	if (v.Type == '+' || v.Type == '-') && bytes.IndexByte(v.Str, '\r') >= 0 {
		return true
	}
	return slices.ContainsFunc(v.Array, hasCR)
}
