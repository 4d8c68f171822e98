package backup

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// encodeStream is what a node sends for recs.
func encodeStream(t testing.TB, h StreamHeader, recs []Record) []byte {
	t.Helper()
	var b bytes.Buffer
	sw, err := NewStreamWriter(&b, h)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := sw.Add(r.Key, r.Value, r.ExpireAt); err != nil {
			t.Fatal(err)
		}
	}
	if err := sw.End(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func manyRecords(n int) []Record {
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Key: []byte(strings.Repeat("k", 3) + string(rune('a'+i/676)) + string(rune('a'+i/26%26)) + string(rune('a'+i%26))),
			Value: bytes.Repeat([]byte{byte(i)}, i%700), ExpireAt: int64(i % 3 * 1000)}
	}
	return recs
}

func readStream(b []byte) (StreamHeader, []Record, error) {
	sr, err := NewStreamReader(bytes.NewReader(b))
	if err != nil {
		return StreamHeader{}, nil, err
	}
	var recs []Record
	for {
		r, err := sr.Next()
		if errors.Is(err, io.EOF) {
			return sr.Header(), recs, nil
		}
		if err != nil {
			return sr.Header(), recs, err
		}
		recs = append(recs, r)
	}
}

// TestStreamRoundTrip sends more records than one batch holds.
func TestStreamRoundTrip(t *testing.T) {
	recs := manyRecords(3000)
	h := StreamHeader{Seq: 9, Keys: 3000, Cluster: "c", Group: "g", Protocol: "checkpoint"}
	gh, got, err := readStream(encodeStream(t, h, recs))
	if err != nil {
		t.Fatal(err)
	}
	if gh != h || len(got) != len(recs) {
		t.Fatalf("header %+v, %d records; want %+v, %d", gh, len(got), h, len(recs))
	}
	for i := range recs {
		if !bytes.Equal(got[i].Key, recs[i].Key) || !bytes.Equal(got[i].Value, recs[i].Value) || got[i].ExpireAt != recs[i].ExpireAt {
			t.Fatalf("record %d differs", i)
		}
	}
}

// TestStreamCutOrDamaged: a stream cut anywhere, or whose end disagrees
// with the records, is refused.
func TestStreamCutOrDamaged(t *testing.T) {
	b := encodeStream(t, StreamHeader{Seq: 1, Keys: 40}, manyRecords(40))
	for n := range len(b) {
		if _, _, err := readStream(b[:n]); !errors.Is(err, ErrStream) {
			t.Fatalf("cut at %d of %d: %v, want ErrStream", n, len(b), err)
		}
	}
	// One record fewer, under the original end reply.
	short := encodeStream(t, StreamHeader{Seq: 1, Keys: 40}, manyRecords(40)[:39])
	end := bytes.LastIndex(b, []byte("*3\r\n$3\r\nend"))
	forged := append(short[:bytes.LastIndex(short, []byte("*3\r\n$3\r\nend"))], b[end:]...)
	if _, _, err := readStream(forged); !errors.Is(err, ErrStream) {
		t.Fatalf("a record missing: %v, want ErrStream", err)
	}
}

func TestStreamErrors(t *testing.T) {
	if _, _, err := readStream([]byte("-TRYAGAIN lockstep: not now\r\n")); !errors.Is(err, ErrTryAgain) {
		t.Fatalf("TRYAGAIN: %v", err)
	}
	if _, _, err := readStream([]byte("-ERR unknown command 'lockstep.backup'\r\n")); !errors.Is(err, ErrRefused) {
		t.Fatalf("unknown command: %v", err)
	}
	b := encodeStream(t, StreamHeader{Keys: 1}, nil)
	head := b[:bytes.Index(b, []byte("*3\r\n$3\r\nend"))]
	_, _, err := readStream(append(bytes.Clone(head), "-ERR lockstep: backup: disk on fire\r\n"...))
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("error after the header: %v", err)
	}
}
