package checkpoint_test

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/lockstep/lockstep/protocol/checkpoint"
)

// The seed corpus lives in testdata/fuzz/FuzzDecodeMessage; plain "go test"
// runs it as a regression test.

func codecSamples() []checkpoint.Message {
	return []checkpoint.Message{
		{Type: checkpoint.MsgHello, From: "n1", To: "n2", Epoch: 7, Seq: 42, Lineage: 5},
		{Type: checkpoint.MsgAccept, From: "p", To: "b", Epoch: 3, Seq: 40, Head: 99, Lineage: 3},
		{Type: checkpoint.MsgChunk, From: "p", To: "b", Epoch: 3, Seq: 120, Prev: 99, Head: 130, Lineage: 3, Offset: 4096, Data: []byte("k=v\x00\x01")},
		{Type: checkpoint.MsgChunk, From: "p", To: "b", Epoch: 3, Seq: 130, Prev: 120, Head: 130, Lineage: 3, Final: true},
		{Type: checkpoint.MsgAck, From: "backup", To: "primary", Epoch: 1, Seq: math.MaxUint64},
		{Type: checkpoint.MsgSnapshotNeeded, From: "a", To: "b", Epoch: math.MaxUint64, Lineage: math.MaxUint64},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	for _, m := range codecSamples() {
		b := checkpoint.AppendMessage([]byte("prefix"), m)
		got, err := checkpoint.DecodeMessage(b[len("prefix"):])
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, m)
		}
	}
}

func TestDecodeCopiesData(t *testing.T) {
	b := checkpoint.AppendMessage(nil, codecSamples()[2])
	m, err := checkpoint.DecodeMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	clear(b)
	if string(m.Data) != "k=v\x00\x01" || m.From != "p" {
		t.Fatalf("decoded message changed with its input buffer: %+v", m)
	}
}

func TestDecodeRejects(t *testing.T) {
	good := checkpoint.AppendMessage(nil, codecSamples()[2])
	for name, b := range map[string][]byte{
		"empty":       nil,
		"version":     append([]byte{9}, good[1:]...),
		"type 0":      append([]byte{1, 0}, good[2:]...),
		"type 6":      append([]byte{1, 6}, good[2:]...),
		"no flags":    {1, 1, 0, 0, 0, 0, 0, 0, 0, 0},
		"bad flags":   {1, 4, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0},
		"truncated":   good[:len(good)-1],
		"trailing":    append(append([]byte(nil), good...), 0),
		"huge data":   {1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 'x'},
		"huge string": {1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 'a'},
		"bad varint":  {1, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	} {
		if _, err := checkpoint.DecodeMessage(b); !errors.Is(err, checkpoint.ErrCorruptMessage) {
			t.Errorf("%s: %v, want ErrCorruptMessage", name, err)
		}
	}
}

// FuzzDecodeMessage checks that DecodeMessage never panics, that whatever
// it accepts re-encodes to the same bytes, and that its allocation stays
// bounded by the input.
func FuzzDecodeMessage(f *testing.F) {
	for _, m := range codecSamples() {
		f.Add(checkpoint.AppendMessage(nil, m))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := checkpoint.DecodeMessage(b)
		if err != nil {
			if !errors.Is(err, checkpoint.ErrCorruptMessage) {
				t.Fatalf("error %v does not wrap ErrCorruptMessage", err)
			}
			return
		}
		if len(m.Data) > len(b) {
			t.Fatalf("%d data bytes from %d bytes", len(m.Data), len(b))
		}
		enc := checkpoint.AppendMessage(nil, m)
		again, err := checkpoint.DecodeMessage(enc)
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("re-encoding %+v gives %+v, %v", m, again, err)
		}
		if len(enc) > len(b) && !bytes.Equal(enc, b) {
			t.Fatalf("re-encoding grew from %d to %d bytes", len(b), len(enc))
		}
	})
}
