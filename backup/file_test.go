package backup

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"testing"
	"time"
)

// memFile is an in-memory FileWriter.
type memFile struct{ b []byte }

func (m *memFile) Write(p []byte) (int, error) {
	m.b = append(m.b, p...)
	return len(p), nil
}

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	if int(off)+len(p) > len(m.b) {
		return 0, io.ErrShortWrite
	}
	return copy(m.b[off:], p), nil
}

// sampleRecords are records in key order with the shapes a backup meets:
// an empty value, binary bytes, expiries, a value larger than a buffer.
func sampleRecords() []Record {
	recs := []Record{
		{Key: []byte("a"), Value: []byte{}},
		{Key: []byte("b\x00\xff"), Value: []byte("\r\n$3\r\n"), ExpireAt: 1},
		{Key: []byte("key:1"), Value: []byte("v1"), ExpireAt: 1_900_000_000_000},
		{Key: []byte("key:2"), Value: bytes.Repeat([]byte("x"), 300<<10)},
	}
	for i := range 20 {
		recs = append(recs, Record{Key: fmt.Appendf(nil, "z%03d", i), Value: fmt.Appendf(nil, "%d", i*i)})
	}
	return recs
}

func sampleHeader() Header {
	return Header{Seq: 4711, Created: time.UnixMilli(1_800_000_000_123), Cluster: "prod", Group: "default", Protocol: "chain"}
}

// writeSample writes recs to an in-memory file and returns its bytes and
// the finished header.
func writeSample(t testing.TB, h Header, recs []Record) ([]byte, Header) {
	t.Helper()
	var f memFile
	w, err := NewWriter(&f, h)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	h, err = w.Close()
	if err != nil {
		t.Fatal(err)
	}
	return f.b, h
}

func readRecords(b []byte) (Header, []Record, error) {
	var recs []Record
	h, err := ReadAll(bytes.NewReader(b), func(r Record) error {
		recs = append(recs, r)
		return nil
	})
	return h, recs, err
}

func TestFileRoundTrip(t *testing.T) {
	recs := sampleRecords()
	b, wh := writeSample(t, sampleHeader(), recs)
	h, got, err := readRecords(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(recs) {
		t.Fatalf("read %d records, wrote %d", len(got), len(recs))
	}
	d := NewDigest(0)
	for i, r := range recs {
		g := got[i]
		if !bytes.Equal(g.Key, r.Key) || !bytes.Equal(g.Value, r.Value) || g.ExpireAt != r.ExpireAt {
			t.Fatalf("record %d: got %q=%.20q@%d, wrote %q=%.20q@%d", i, g.Key, g.Value, g.ExpireAt, r.Key, r.Value, r.ExpireAt)
		}
		d.Add(r.Key, r.Value, r.ExpireAt)
	}
	want := sampleHeader()
	switch {
	case h != wh:
		t.Fatalf("read header %+v, Close returned %+v", h, wh)
	case h.Seq != want.Seq || h.Cluster != want.Cluster || h.Group != want.Group || h.Protocol != want.Protocol:
		t.Fatalf("header %+v, want the names and seq of %+v", h, want)
	case !h.Created.Equal(want.Created) || h.Version != FileVersion:
		t.Fatalf("header created %v version %d", h.Created, h.Version)
	case h.Keys != uint64(len(recs)) || h.Digest != d.Sum():
		t.Fatalf("header says %d keys, digest %s; want %d, %s", h.Keys, FormatDigest(h.Digest), len(recs), d)
	case int(h.BodyBytes)+len(h.encode()) != len(b):
		t.Fatalf("header says %d body bytes of a %d-byte file", h.BodyBytes, len(b))
	}
}

func TestFileEmpty(t *testing.T) {
	b, _ := writeSample(t, Header{}, nil)
	h, recs, err := readRecords(b)
	if err != nil || len(recs) != 0 || h.Keys != 0 || h.Digest != NewDigest(0).Sum() {
		t.Fatalf("empty backup: %+v, %d records, %v", h, len(recs), err)
	}
}

// TestFileTruncated cuts a backup at every length: each must be refused
// as truncated, and never read as a smaller, valid backup.
func TestFileTruncated(t *testing.T) {
	recs := sampleRecords()
	recs[3].Value = []byte("small") // keeps the loop quick
	b, _ := writeSample(t, sampleHeader(), recs)
	for n := range len(b) {
		_, _, err := readRecords(b[:n])
		if !errors.Is(err, ErrTruncated) || !errors.Is(err, ErrCorrupt) {
			t.Fatalf("cut at %d of %d bytes: %v, want ErrTruncated", n, len(b), err)
		}
	}
}

// TestFileCorruptByte changes every byte of a backup in turn: each change
// must be refused as corrupt.
func TestFileCorruptByte(t *testing.T) {
	recs := sampleRecords()
	recs[3].Value = []byte("small")
	b, _ := writeSample(t, sampleHeader(), recs)
	for i := range b {
		for _, flip := range []byte{0x01, 0x80, 0xff} {
			c := bytes.Clone(b)
			c[i] ^= flip
			if _, _, err := readRecords(c); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("byte %d of %d xor %#x: %v, want ErrCorrupt", i, len(b), flip, err)
			}
		}
	}
}

func TestFileTrailingData(t *testing.T) {
	b, _ := writeSample(t, sampleHeader(), sampleRecords())
	if _, _, err := readRecords(append(b, 0)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a byte after the end: %v, want ErrCorrupt", err)
	}
}

// TestFileVersion gives an intact header another version number: the
// reader must say so rather than call the file corrupt.
func TestFileVersion(t *testing.T) {
	b, _ := writeSample(t, sampleHeader(), sampleRecords())
	size := int(binary.BigEndian.Uint32(b[len(fileMagic)+2:]))
	binary.BigEndian.PutUint16(b[len(fileMagic):], FileVersion+1)
	binary.BigEndian.PutUint32(b[size-4:], crc32.Checksum(b[:size-4], castagnoli))
	if _, _, err := readRecords(b); !errors.Is(err, ErrVersion) {
		t.Fatalf("version %d: %v, want ErrVersion", FileVersion+1, err)
	}
}

func TestFileNotABackup(t *testing.T) {
	_, _, err := readRecords([]byte("*1\r\n$4\r\nPING\r\n this is not a backup file at all"))
	if !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrTruncated) {
		t.Fatalf("not a backup: %v, want ErrCorrupt", err)
	}
}

func TestWriterRefusesDisorder(t *testing.T) {
	var f memFile
	w, err := NewWriter(&f, Header{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(Record{Key: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"b", "a"} {
		if err := w.Add(Record{Key: []byte(k)}); !errors.Is(err, ErrUnordered) {
			t.Fatalf("%q after %q: %v, want ErrUnordered", k, "b", err)
		}
	}
	if _, err := w.Close(); !errors.Is(err, ErrUnordered) {
		t.Fatalf("Close after a refused record: %v", err)
	}
}

func TestDigestAliveAfter(t *testing.T) {
	all, alive, only := NewDigest(0), NewDigest(100), NewDigest(0)
	for _, r := range []Record{{Key: []byte("a"), ExpireAt: 0}, {Key: []byte("b"), ExpireAt: 100}, {Key: []byte("c"), ExpireAt: 101}} {
		all.Add(r.Key, r.Value, r.ExpireAt)
		alive.Add(r.Key, r.Value, r.ExpireAt)
		if r.ExpireAt != 100 {
			only.Add(r.Key, r.Value, r.ExpireAt)
		}
	}
	if all.Keys() != 3 || alive.Keys() != 2 || alive.Sum() != only.Sum() || all.Sum() == alive.Sum() {
		t.Fatalf("all %d %s, alive after 100: %d %s, want %s", all.Keys(), all, alive.Keys(), alive, only)
	}
}

// FuzzReadBackup feeds the reader arbitrary bytes. It must never panic,
// and whatever it accepts must be a backup the writer makes again with
// the same header and records.
func FuzzReadBackup(f *testing.F) {
	recs := sampleRecords()
	recs[3].Value = []byte("small")
	b, _ := writeSample(f, sampleHeader(), recs)
	f.Add(b)
	f.Add(b[:len(b)/2])
	empty, _ := writeSample(f, Header{}, nil)
	f.Add(empty)
	f.Fuzz(func(t *testing.T, data []byte) {
		h, got, err := readRecords(data)
		if err != nil {
			return
		}
		again, h2 := writeSample(t, h, got)
		if h2 != h {
			t.Fatalf("accepted header %+v, written again %+v", h, h2)
		}
		if _, _, err := readRecords(again); err != nil {
			t.Fatalf("written again, refused: %v", err)
		}
	})
}
