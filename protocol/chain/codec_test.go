package chain_test

import (
	"math"
	"testing"

	"github.com/lockstep/lockstep/protocol/chain"
	"github.com/lockstep/lockstep/sim"
)

// codec is chain's wire format for the shared codec checks.
var codec = sim.Codec[chain.Message]{
	Append:  chain.AppendMessage,
	Decode:  chain.DecodeMessage,
	Corrupt: chain.ErrCorruptMessage,
	Entries: func(m chain.Message) int { return len(m.Entries) },
}

// The seed corpus lives in testdata/fuzz/FuzzDecodeMessage; plain "go test"
// runs it as a regression test.

func codecSamples() []chain.Message {
	return []chain.Message{
		{Type: chain.MsgHello, From: "n1", To: "n2", Epoch: 7, Seq: 42},
		{Type: chain.MsgAck, From: "tail", To: "mid", Epoch: 1, Seq: math.MaxUint64},
		{Type: chain.MsgSnapshotNeeded, From: "a", To: "b", Epoch: math.MaxUint64, Seq: 0},
		{Type: chain.MsgEntries, From: "head", To: "mid", Epoch: 3, Seq: 12, Acked: 9, Entries: []chain.Entry{
			{Seq: 10, Data: []byte("set k v")}, {Seq: 11, Data: []byte{0, 1, 2}}, {Seq: 12},
		}},
		{Type: chain.MsgEntries, From: "x", To: "y", Epoch: 2, Seq: 5, Entries: []chain.Entry{
			{Seq: math.MaxUint64, Data: []byte("wrap")}, {Seq: 1, Data: []byte("back")},
		}},
		{Type: chain.MsgEntries, From: "", To: "", Epoch: 0, Seq: 0},
		{Type: chain.MsgEntries, From: "h", To: "m", Epoch: 1, Seq: 1, Acked: math.MaxUint64},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	codec.CheckRoundTrip(t, codecSamples()...)
}

// TestCodecCompact checks that consecutive entries cost one byte of seq.
func TestCodecCompact(t *testing.T) {
	m := chain.Message{Type: chain.MsgEntries, From: "a", To: "b", Epoch: 1, Seq: 1 << 40}
	for i := range 100 {
		m.Entries = append(m.Entries, chain.Entry{Seq: 1<<40 - 99 + uint64(i), Data: []byte("x")})
	}
	if n := len(chain.AppendMessage(nil, m)); n > 2+4+10+100*3+8 {
		t.Fatalf("100 one-byte entries take %d bytes", n)
	}
}

func TestDecodeCopiesData(t *testing.T) {
	b := chain.AppendMessage(nil, chain.Message{Type: chain.MsgEntries, From: "a", To: "b", Entries: []chain.Entry{{Seq: 1, Data: []byte("abc")}}})
	m, err := chain.DecodeMessage(b)
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
	good := chain.AppendMessage(nil, codecSamples()[3])
	codec.CheckCorrupt(t, map[string][]byte{
		"empty":       nil,
		"version":     append([]byte{9}, good[1:]...),
		"type 0":      append([]byte{2, 0}, good[2:]...),
		"type 5":      append([]byte{2, 5}, good[2:]...),
		"truncated":   good[:len(good)-1],
		"trailing":    append(append([]byte(nil), good...), 0),
		"huge count":  {2, 2, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"huge string": {2, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 'a'},
		"bad varint":  {2, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"version 1":   append([]byte{1}, good[1:]...),
	})
}

// FuzzDecodeMessage checks that DecodeMessage never panics, that whatever
// it accepts survives re-encoding, and that its allocations stay bounded by
// the input.
func FuzzDecodeMessage(f *testing.F) {
	for _, m := range codecSamples() {
		f.Add(chain.AppendMessage(nil, m))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		codec.CheckDecode(t, b)
	})
}
