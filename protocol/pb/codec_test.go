package pb_test

import (
	"math"
	"testing"

	"github.com/lockstep/lockstep/protocol/pb"
	"github.com/lockstep/lockstep/sim"
)

// codec is pb's wire format for the shared codec checks.
var codec = sim.Codec[pb.Message]{
	Append:  pb.AppendMessage,
	Decode:  pb.DecodeMessage,
	Corrupt: pb.ErrCorruptMessage,
	Entries: func(m pb.Message) int { return len(m.Entries) },
}

// The seed corpus lives in testdata/fuzz/FuzzDecodeMessage; plain "go test"
// runs it as a regression test.

func codecSamples() []pb.Message {
	return []pb.Message{
		{Type: pb.MsgHello, From: "n1", To: "n2", Epoch: 7, Seq: 42, Lineage: 5},
		{Type: pb.MsgAck, From: "backup", To: "primary", Epoch: 1, Seq: math.MaxUint64},
		{Type: pb.MsgSnapshotNeeded, From: "a", To: "b", Epoch: math.MaxUint64, Seq: 0, Lineage: math.MaxUint64},
		{Type: pb.MsgEntries, From: "primary", To: "backup", Epoch: 3, Seq: 12, Lineage: 2, Commit: 9, Entries: []pb.Entry{
			{Seq: 10, Data: []byte("set k v")}, {Seq: 11, Data: []byte{0, 1, 2}}, {Seq: 12},
		}},
		{Type: pb.MsgEntries, From: "x", To: "y", Epoch: 2, Seq: 5, Entries: []pb.Entry{
			{Seq: math.MaxUint64, Data: []byte("wrap")}, {Seq: 1, Data: []byte("back")},
		}},
		{Type: pb.MsgEntries, From: "", To: "", Epoch: 0, Seq: 0},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	codec.CheckRoundTrip(t, codecSamples()...)
}

// TestCodecCompact checks that consecutive entries cost one byte of seq.
func TestCodecCompact(t *testing.T) {
	m := pb.Message{Type: pb.MsgEntries, From: "a", To: "b", Epoch: 1, Seq: 1 << 40}
	for i := range 100 {
		m.Entries = append(m.Entries, pb.Entry{Seq: 1<<40 - 99 + uint64(i), Data: []byte("x")})
	}
	if n := len(pb.AppendMessage(nil, m)); n > 2+4+10+100*3+8+2 {
		t.Fatalf("100 one-byte entries take %d bytes", n)
	}
}

func TestDecodeCopiesData(t *testing.T) {
	b := pb.AppendMessage(nil, pb.Message{Type: pb.MsgEntries, From: "a", To: "b", Entries: []pb.Entry{{Seq: 1, Data: []byte("abc")}}})
	m, err := pb.DecodeMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 0
	}
	if string(m.Entries[0].Data) != "abc" || m.From != "a" {
		t.Fatalf("decoded message changed with its input buffer: %+v", m)
	}
}

func TestDecodeRejects(t *testing.T) {
	good := pb.AppendMessage(nil, codecSamples()[3])
	codec.CheckCorrupt(t, map[string][]byte{
		"empty":       nil,
		"version":     append([]byte{9}, good[1:]...),
		"type 0":      append([]byte{1, 0}, good[2:]...),
		"type 5":      append([]byte{1, 5}, good[2:]...),
		"no commit":   {1, 1, 0, 0, 0, 0, 0},
		"truncated":   good[:len(good)-1],
		"trailing":    append(append([]byte(nil), good...), 0),
		"huge count":  {1, 2, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"huge string": {1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 'a'},
		"bad varint":  {1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	})
}

// FuzzDecodeMessage checks that DecodeMessage never panics, that whatever
// it accepts survives re-encoding, and that its allocations stay bounded by
// the input.
func FuzzDecodeMessage(f *testing.F) {
	for _, m := range codecSamples() {
		f.Add(pb.AppendMessage(nil, m))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		codec.CheckDecode(t, b)
	})
}
