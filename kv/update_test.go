package kv

import (
	"bytes"
	"errors"
	"testing"

	"github.com/lockstep/lockstep/statemachine"
	"github.com/lockstep/lockstep/storage"
)

func decodeAll(u []byte) ([]byte, []storage.Op, error) {
	reply, n, body, err := decodeHeader(u)
	if err != nil {
		return nil, nil, err
	}
	ops := make([]storage.Op, n)
	if err := decodeOps(u[0], body, ops); err != nil {
		return nil, nil, err
	}
	return reply, ops, nil
}

func TestUpdateRoundTrip(t *testing.T) {
	cases := []struct {
		reply []byte
		ops   []storage.Op
	}{
		{[]byte("+OK\r\n"), nil},
		{nil, []storage.Op{{Kind: storage.OpClear}}},
		{[]byte(":1\r\n"), []storage.Op{
			{Kind: storage.OpDelete, Key: []byte("gone"), Prev: storage.PrevExpiring},
			{Kind: storage.OpSet, Key: []byte("k"), Entry: storage.Entry{Value: []byte("v"), ExpireAt: 1<<63 - 1}, Prev: storage.PrevAbsent},
			{Kind: storage.OpSet, Key: []byte{}, Entry: storage.Entry{Value: bytes.Repeat([]byte{0xff}, 300)}},
			{Kind: storage.OpClear},
		}},
	}
	for i, tc := range cases {
		u := encodeUpdate(tc.reply, tc.ops)
		if len(u) != cap(u) {
			t.Errorf("case %d: encoded %d bytes into capacity %d; size computation is off", i, len(u), cap(u))
		}
		reply, ops, err := decodeAll(u)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !bytes.Equal(reply, tc.reply) || len(ops) != len(tc.ops) {
			t.Fatalf("case %d: got %q with %d ops", i, reply, len(ops))
		}
		for j := range ops {
			a, b := ops[j], tc.ops[j]
			if a.Kind != b.Kind || a.Prev != b.Prev || !bytes.Equal(a.Key, b.Key) || !bytes.Equal(a.Entry.Value, b.Entry.Value) || a.Entry.ExpireAt != b.Entry.ExpireAt {
				t.Fatalf("case %d op %d: got %+v, want %+v", i, j, a, b)
			}
		}
	}
}

func TestDecodeUpdateRejects(t *testing.T) {
	for _, u := range [][]byte{
		nil,
		{3, 0, 0},                    // unknown version
		{1, 0, 1, 0x12, 1, 'k'},      // a hint in a version 1 update
		{2, 0, 1, 0x52, 1, 'k'},      // unknown hint
		{2, 0, 1, 0x13},              // a hint on a clear
		{1, 5, 'a'},                  // reply longer than the update
		{1, 0},                       // no op count
		{1, 0, 3, 3},                 // three ops in one byte
		{1, 0, 1, 9},                 // unknown op kind
		{1, 0, 1, 2, 1},              // delete with a cut key
		{1, 0, 1, 1, 1, 'k', 1, 'v'}, // set without expiry
		{1, 0, 0, 7},                 // trailing byte
		{1, 0, 1, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // expiry > MaxInt64
		{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},          // varint overflow
	} {
		if _, _, err := decodeAll(u); !errors.Is(err, statemachine.ErrCorruptUpdate) {
			t.Errorf("decode(%x) = %v, want ErrCorruptUpdate", u, err)
		}
	}
}

// FuzzDecodeUpdate feeds arbitrary bytes to the decoder. It must never
// panic, and whatever it accepts must re-encode to an Update that decodes
// to the same thing.
func FuzzDecodeUpdate(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte(encodeUpdate([]byte("+OK\r\n"), []storage.Op{{Kind: storage.OpSet, Key: []byte("k"), Entry: storage.Entry{Value: []byte("v"), ExpireAt: 17}}})))
	f.Add([]byte(encodeUpdate([]byte(":2\r\n"), []storage.Op{{Kind: storage.OpDelete, Key: []byte("a")}, {Kind: storage.OpClear}})))
	f.Fuzz(func(t *testing.T, u []byte) {
		reply, ops, err := decodeAll(u)
		if err != nil {
			if !errors.Is(err, statemachine.ErrCorruptUpdate) {
				t.Fatalf("error %v does not wrap ErrCorruptUpdate", err)
			}
			return
		}
		again := encodeUpdate(reply, ops)
		reply2, ops2, err := decodeAll(again)
		if err != nil {
			t.Fatalf("re-encoded update does not decode: %v", err)
		}
		if !bytes.Equal(reply, reply2) || len(ops) != len(ops2) {
			t.Fatalf("round trip changed the update")
		}
		for i := range ops {
			a, b := ops[i], ops2[i]
			if a.Kind != b.Kind || a.Prev != b.Prev || !bytes.Equal(a.Key, b.Key) || !bytes.Equal(a.Entry.Value, b.Entry.Value) || a.Entry.ExpireAt != b.Entry.ExpireAt {
				t.Fatalf("op %d changed: %+v vs %+v", i, a, b)
			}
		}
	})
}

// FuzzRestore feeds arbitrary streams to Restore, which must fail cleanly
// or succeed, never panic or hang.
func FuzzRestore(f *testing.F) {
	h := newHarness(f, memStore)
	h.do("SET", "k", "v", "EX", "10")
	h.do("SET", "", "")
	f.Add(h.snapshot())
	f.Add([]byte("LSKV"))
	f.Fuzz(func(t *testing.T, snap []byte) {
		m := New(storage.NewMemory(), Options{})
		if err := m.Restore(bytes.NewReader(snap)); err != nil && !errors.Is(err, statemachine.ErrCorruptSnapshot) {
			t.Fatalf("Restore error %v wraps neither ErrCorruptSnapshot", err)
		}
	})
}
