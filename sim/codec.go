package sim

import (
	"bytes"
	"errors"
	"reflect"
)

// Codec is a protocol's message codec, for the checks every wire format
// of lockstep must pass: what is encoded decodes to the same message, and
// any input either decodes to a message that survives re-encoding or is
// refused with the codec's sentinel error, never a panic or an allocation
// beyond what the input can justify.
type Codec[M any] struct {
	Append  func(b []byte, m M) []byte
	Decode  func(b []byte) (M, error)
	Corrupt error         // the sentinel every decoding error wraps
	Entries func(m M) int // how many entries m carries
}

// CheckRoundTrip checks that every message decodes to itself, encoded
// after a prefix.
func (c Codec[M]) CheckRoundTrip(t TB, msgs ...M) {
	t.Helper()
	for _, m := range msgs {
		b := c.Append([]byte("prefix"), m)
		got, err := c.Decode(b[len("prefix"):])
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, m)
		}
	}
}

// CheckCorrupt checks that every input, named for the report, is refused
// with the Corrupt sentinel.
func (c Codec[M]) CheckCorrupt(t TB, inputs map[string][]byte) {
	t.Helper()
	for name, b := range inputs {
		if _, err := c.Decode(b); !errors.Is(err, c.Corrupt) {
			t.Errorf("%s: %v, want %v", name, err, c.Corrupt)
		}
	}
}

// CheckDecode is the body of a fuzz test: whatever Decode accepts from b
// survives re-encoding and holds no more entries than b has bytes, and
// what it refuses it refuses with the Corrupt sentinel.
func (c Codec[M]) CheckDecode(t TB, b []byte) {
	t.Helper()
	m, err := c.Decode(b)
	if err != nil {
		if !errors.Is(err, c.Corrupt) {
			t.Fatalf("error %v does not wrap %v", err, c.Corrupt)
		}
		return
	}
	if n := c.Entries(m); n > len(b) {
		t.Fatalf("%d entries from %d bytes", n, len(b))
	}
	again, err := c.Decode(c.Append(nil, m))
	if err != nil || !reflect.DeepEqual(again, m) {
		t.Fatalf("re-encoding %+v gives %+v, %v", m, again, err)
	}
	if enc := c.Append(nil, m); len(enc) > len(b) && !bytes.Equal(enc, b) {
		t.Fatalf("re-encoding grew from %d to %d bytes", len(b), len(enc))
	}
}
