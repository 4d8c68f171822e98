package wire

import (
	"errors"
	"slices"
	"testing"
)

// TestReceive checks the receiving end of a stream: entries the log holds
// are skipped and reported, the next ones appended to the log and to
// apply, and a gap ends the batch.
func TestReceive(t *testing.T) {
	var l Log
	l.Reset(2)
	apply := []Entry{{Seq: 2}}
	batch := []Entry{{Seq: 2}, {Seq: 3}, {Seq: 4}, {Seq: 3}, {Seq: 6}, {Seq: 5}}
	apply, dup, gap := l.Receive(batch, apply)
	seqs := func(es []Entry) (s []uint64) {
		for _, e := range es {
			s = append(s, e.Seq)
		}
		return s
	}
	if !dup || !gap || l.Last() != 4 || !slices.Equal(seqs(apply), []uint64{2, 3, 4}) {
		t.Fatalf("dup %t, gap %t, last %d, apply %v", dup, gap, l.Last(), seqs(apply))
	}
	apply, dup, gap = l.Receive([]Entry{{Seq: 5}}, nil)
	if dup || gap || l.Last() != 5 || len(apply) != 1 {
		t.Fatalf("dup %t, gap %t, last %d, apply %v", dup, gap, l.Last(), seqs(apply))
	}
}

// TestHeader checks that a header reads back, and that another version
// or a type out of range is refused with the sentinel.
func TestHeader(t *testing.T) {
	errCorrupt := errors.New("corrupt")
	b := AppendHeader(nil, 1, 3, "from", "to", 1<<40)
	h, err := NewDecoder(b, errCorrupt).Header(1, 4)
	if err != nil || h != (Header{Type: 3, From: "from", To: "to", Epoch: 1 << 40}) {
		t.Fatalf("header %+v, %v", h, err)
	}
	for _, tc := range []struct {
		b       []byte
		version byte
		maxType byte
	}{{b, 2, 4}, {b, 1, 2}, {nil, 1, 4}, {[]byte{1, 0}, 1, 4}} {
		if _, err := NewDecoder(tc.b, errCorrupt).Header(tc.version, tc.maxType); !errors.Is(err, errCorrupt) {
			t.Errorf("%x as version %d, types to %d: %v", tc.b, tc.version, tc.maxType, err)
		}
	}
}
