package backup

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"
	"time"
)

// Errors about backup files and records, wrapped with %w.
var (
	// ErrCorrupt: the file is not a backup this version can trust: a bad
	// magic, a checksum or count that does not match, a record out of
	// order, bytes after the end. A truncated file is corrupt too.
	ErrCorrupt = errors.New("lockstep: backup file corrupt")
	// ErrTruncated: the file ends before its end marker (it also matches
	// ErrCorrupt). A copy cut short, or a disk that filled up.
	ErrTruncated = errors.New("lockstep: backup file truncated")
	// ErrVersion: the header is intact but names a format version this
	// binary does not read.
	ErrVersion = errors.New("lockstep: backup file version not supported")
	// ErrUnordered: records were handed to a Writer out of ascending key
	// order, which the digest and the reader's checks rely on.
	ErrUnordered = errors.New("lockstep: backup records out of key order")
)

// File layout, version 1. Every integer is big endian.
//
//	header:
//	  magic "LSBACKUP" | version uint16 | header length uint32
//	  seq uint64 | keys uint64 | created (Unix ms) int64
//	  body length uint64 | body CRC-32C uint32 | data digest [32]
//	  cluster, group, protocol: each uint16 length + bytes
//	  header CRC-32C uint32 (of every header byte before it)
//	body:
//	  records, each: 'E' | uvarint len(key) key | uvarint len(value) value | uvarint expireAt
//	  'Z' | uvarint record count
//
// Every version starts with the magic, the version and the header length
// and ends its header with its CRC, so a reader can tell a damaged header
// (ErrCorrupt) from a newer format (ErrVersion). The header comes first but
// is written last: its counts and checksums are known only once the body
// is, and the file is a temporary one until then (see Take). The body's
// CRC and the digest are checked separately: the CRC catches any damaged
// byte, and the digest proves the records are the ones the source node
// hashed.
const (
	fileMagic = "LSBACKUP"
	// FileVersion is the version this package writes.
	FileVersion = 1
	preamble    = len(fileMagic) + 2 + 4
	fixedHeader = preamble + 8 + 8 + 8 + 8 + 4 + 32
	maxName     = 1024
	maxHeader   = fixedHeader + 3*(2+maxName) + 4
	// maxField bounds a key or value read from a file, so a damaged
	// length fails instead of reserving gigabytes; lockstep's own limit
	// on a string is the same.
	maxField  = 512 << 20
	tagRecord = 'E'
	tagEnd    = 'Z'
)

// Header describes a backup file.
type Header struct {
	Version uint16
	// Seq is the commit point: the source group's applied seq the backup
	// was taken at.
	Seq uint64
	// Keys is the number of records.
	Keys    uint64
	Created time.Time
	// BodyBytes is the length of everything after the header.
	BodyBytes uint64
	// Digest is the data digest of every record (see Digest).
	Digest [32]byte
	// Cluster, Group and Protocol name the source, where it said.
	Cluster, Group, Protocol string

	bodyCRC uint32
}

// Record is one key with its value and absolute expiry (Unix ms, 0 for
// none).
type Record struct {
	Key, Value []byte
	ExpireAt   int64
}

// castagnoli is the CRC-32C table, which modern CPUs compute in hardware.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func newCRC() hash.Hash32 { return crc32.New(castagnoli) }

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

// encode renders the header, its CRC included.
func (h *Header) encode() []byte {
	size := fixedHeader + 3*2 + len(h.Cluster) + len(h.Group) + len(h.Protocol) + 4
	b := make([]byte, 0, size)
	b = append(b, fileMagic...)
	b = binary.BigEndian.AppendUint16(b, h.Version)
	b = binary.BigEndian.AppendUint32(b, uint32(size))
	b = binary.BigEndian.AppendUint64(b, h.Seq)
	b = binary.BigEndian.AppendUint64(b, h.Keys)
	b = binary.BigEndian.AppendUint64(b, uint64(h.Created.UnixMilli()))
	b = binary.BigEndian.AppendUint64(b, h.BodyBytes)
	b = binary.BigEndian.AppendUint32(b, h.bodyCRC)
	b = append(b, h.Digest[:]...)
	for _, s := range []string{h.Cluster, h.Group, h.Protocol} {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		b = append(b, s...)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// readHeader reads and checks a header.
func readHeader(r io.Reader) (Header, error) {
	b := make([]byte, preamble, maxHeader)
	if _, err := io.ReadFull(r, b); err != nil {
		return Header{}, readErr(err, "in the header")
	}
	if string(b[:len(fileMagic)]) != fileMagic {
		return Header{}, corrupt("not a lockstep backup (magic %q)", b[:len(fileMagic)])
	}
	size := int(binary.BigEndian.Uint32(b[len(fileMagic)+2:]))
	if size < fixedHeader+3*2+4 || size > maxHeader {
		return Header{}, corrupt("header length %d", size)
	}
	b = b[:size]
	if _, err := io.ReadFull(r, b[preamble:]); err != nil {
		return Header{}, readErr(err, "in the header")
	}
	sum := binary.BigEndian.Uint32(b[size-4:])
	if crc32.Checksum(b[:size-4], castagnoli) != sum {
		return Header{}, corrupt("header checksum mismatch")
	}
	h := Header{Version: binary.BigEndian.Uint16(b[len(fileMagic):])}
	if h.Version != FileVersion {
		return h, fmt.Errorf("%w: version %d (this binary reads version %d)", ErrVersion, h.Version, FileVersion)
	}
	return h, h.decodeFields(b[preamble : size-4])
}

// decodeFields fills h from the header bytes between the preamble and the
// CRC.
func (h *Header) decodeFields(b []byte) error {
	h.Seq = binary.BigEndian.Uint64(b)
	h.Keys = binary.BigEndian.Uint64(b[8:])
	h.Created = time.UnixMilli(int64(binary.BigEndian.Uint64(b[16:])))
	h.BodyBytes = binary.BigEndian.Uint64(b[24:])
	h.bodyCRC = binary.BigEndian.Uint32(b[32:])
	copy(h.Digest[:], b[36:68])
	b = b[68:]
	names := []*string{&h.Cluster, &h.Group, &h.Protocol}
	for _, name := range names {
		if len(b) < 2 || int(binary.BigEndian.Uint16(b))+2 > len(b) {
			return corrupt("header names")
		}
		n := int(binary.BigEndian.Uint16(b))
		*name, b = string(b[2:2+n]), b[2+n:]
	}
	if len(b) != 0 {
		return corrupt("header names")
	}
	return nil
}

// readErr turns a read error into the error a reader reports: a file that
// ends early is truncated, anything else is passed on.
func readErr(err error, where string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return truncated{where: where}
	}
	return fmt.Errorf("lockstep: read backup: %w", err)
}

// truncated is the error of a file that ends early. It is ErrTruncated,
// and ErrCorrupt as well: a caller that only asks whether a file can be
// trusted need not know the ways it cannot.
type truncated struct{ where string }

func (t truncated) Error() string { return ErrTruncated.Error() + ": the file ends " + t.where }

func (t truncated) Is(target error) bool { return target == ErrTruncated || target == ErrCorrupt }

// FileWriter is where a Writer puts a backup: a file it writes in order,
// then rewrites the header of at the start. *os.File is one.
type FileWriter interface {
	io.Writer
	io.WriterAt
}

// Writer writes a backup file. Records must come in ascending key order.
// A Writer is not safe for concurrent use.
type Writer struct {
	dst  FileWriter
	bw   *bufio.Writer
	h    Header
	crc  hash.Hash32
	dig  *Digest
	keys uint64
	body uint64
	rec  []byte
	last []byte
	err  error
}

// NewWriter starts a backup file on dst, at its start, for a backup
// described by h (Seq, Created, Cluster, Group, Protocol; the rest is
// filled in by Close). Until Close it holds a header that says nothing.
func NewWriter(dst FileWriter, h Header) (*Writer, error) {
	for _, s := range []string{h.Cluster, h.Group, h.Protocol} {
		if len(s) > maxName {
			return nil, fmt.Errorf("lockstep: backup header name of %d bytes (at most %d)", len(s), maxName)
		}
	}
	h.Version, h.Keys, h.BodyBytes, h.bodyCRC, h.Digest = FileVersion, 0, 0, 0, [32]byte{}
	h.Created = time.UnixMilli(h.Created.UnixMilli()) // as the file holds it
	w := &Writer{dst: dst, bw: bufio.NewWriterSize(dst, 256<<10), h: h, crc: newCRC(), dig: NewDigest(0)}
	if _, err := w.bw.Write(h.encode()); err != nil {
		return nil, fmt.Errorf("lockstep: write backup: %w", err)
	}
	return w, nil
}

// Add appends one record.
func (w *Writer) Add(r Record) error {
	if w.err != nil {
		return w.err
	}
	if r.ExpireAt < 0 {
		w.err = fmt.Errorf("lockstep: backup record %q: expiry %d", r.Key, r.ExpireAt)
		return w.err
	}
	if w.keys > 0 && bytes.Compare(r.Key, w.last) <= 0 {
		w.err = fmt.Errorf("%w: %q after %q", ErrUnordered, r.Key, w.last)
		return w.err
	}
	w.last = append(w.last[:0], r.Key...)
	w.rec = append(w.rec[:0], tagRecord)
	w.rec = appendField(w.rec, r.Key)
	w.rec = appendField(w.rec, r.Value)
	w.rec = binary.AppendUvarint(w.rec, uint64(r.ExpireAt))
	w.dig.Add(r.Key, r.Value, r.ExpireAt)
	w.keys++
	return w.write(w.rec)
}

func appendField(b, f []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(f))), f...)
}

func (w *Writer) write(b []byte) error {
	w.crc.Write(b)
	w.body += uint64(len(b))
	if _, err := w.bw.Write(b); err != nil {
		w.err = fmt.Errorf("lockstep: write backup: %w", err)
	}
	return w.err
}

// Digest is the data digest of the records added so far.
func (w *Writer) Digest() [32]byte { return w.dig.Sum() }

// Close writes the end marker, flushes, and writes the finished header
// over the placeholder. It does not sync or close dst: making the file
// durable and giving it its name is the caller's (Take).
func (w *Writer) Close() (Header, error) {
	if w.err != nil {
		return Header{}, w.err
	}
	end := binary.AppendUvarint([]byte{tagEnd}, w.keys)
	if err := w.write(end); err != nil {
		return Header{}, err
	}
	if err := w.bw.Flush(); err != nil {
		return Header{}, fmt.Errorf("lockstep: write backup: %w", err)
	}
	w.h.Keys, w.h.BodyBytes, w.h.bodyCRC, w.h.Digest = w.keys, w.body, w.crc.Sum32(), w.dig.Sum()
	if _, err := w.dst.WriteAt(w.h.encode(), 0); err != nil {
		return Header{}, fmt.Errorf("lockstep: write backup header: %w", err)
	}
	return w.h, nil
}

// Reader reads a backup file and checks it as it goes: every record's
// framing and order while reading, and the body's length, CRC, record
// count and digest against the header at the end marker. Until Next has
// returned io.EOF, nothing read can be trusted. A Reader is not safe for
// concurrent use.
type Reader struct {
	br   *bufio.Reader
	h    Header
	crc  hash.Hash32
	dig  *Digest
	keys uint64
	body uint64
	last []byte
	err  error
	one  [1]byte
}

// NewReader reads and checks the header of the backup in r.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	h, err := readHeader(br)
	if err != nil {
		return nil, err
	}
	return &Reader{br: br, h: h, crc: newCRC(), dig: NewDigest(0)}, nil
}

// Header is the file's header as written; its counts and digest are
// verified only once Next returns io.EOF.
func (r *Reader) Header() Header { return r.h }

// Next returns the next record, or io.EOF once the end marker has been
// read and every check passed. The record's slices are its own.
func (r *Reader) Next() (Record, error) {
	if r.err != nil {
		return Record{}, r.err
	}
	switch tag := r.byte(); {
	case r.err != nil:
	case tag == tagRecord:
		rec := r.record()
		if r.err == nil {
			return rec, nil
		}
	case tag == tagEnd:
		r.err = r.finish()
	default:
		r.err = corrupt("unknown record tag %#x after %d records", tag, r.keys)
	}
	return Record{}, r.err
}

func (r *Reader) fail(err error) {
	if r.err == nil {
		r.err = readErr(err, fmt.Sprintf("after %d of %d records (%d of %d body bytes)", r.keys, r.h.Keys, r.body, r.h.BodyBytes))
	}
}

func (r *Reader) byte() byte {
	if r.err != nil {
		return 0
	}
	c, err := r.br.ReadByte()
	if err != nil {
		r.fail(err)
		return 0
	}
	r.one[0] = c
	r.crc.Write(r.one[:])
	r.body++
	return c
}

func (r *Reader) uvarint() uint64 {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		if shift == 63 && c > 1 {
			break
		}
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v
		}
	}
	if r.err == nil {
		r.err = corrupt("bad varint after %d records", r.keys)
	}
	return 0
}

// field reads a length-prefixed field, growing its buffer as bytes arrive
// rather than trusting the length.
func (r *Reader) field() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > maxField {
		r.err = corrupt("field of %d bytes after %d records", n, r.keys)
		return nil
	}
	const chunk = 1 << 20
	buf := make([]byte, 0, min(int(n), chunk))
	for len(buf) < int(n) {
		k := min(int(n)-len(buf), chunk)
		buf = append(buf, make([]byte, k)...)
		if _, err := io.ReadFull(r.br, buf[len(buf)-k:]); err != nil {
			r.fail(err)
			return nil
		}
	}
	r.crc.Write(buf)
	r.body += n
	return buf
}

func (r *Reader) record() Record {
	rec := Record{Key: r.field(), Value: r.field()}
	exp := r.uvarint()
	switch {
	case r.err != nil:
		return Record{}
	case exp > math.MaxInt64:
		r.err = corrupt("expiry %d after %d records", exp, r.keys)
		return Record{}
	case r.keys > 0 && bytes.Compare(rec.Key, r.last) <= 0:
		r.err = corrupt("key %q after %q", rec.Key, r.last)
		return Record{}
	}
	rec.ExpireAt = int64(exp)
	r.last = append(r.last[:0], rec.Key...)
	r.dig.Add(rec.Key, rec.Value, rec.ExpireAt)
	r.keys++
	return rec
}

// finish checks the end marker against the header and that nothing
// follows it. It returns io.EOF when every check passes.
func (r *Reader) finish() error {
	n := r.uvarint()
	switch {
	case r.err != nil:
		return r.err
	case r.body != r.h.BodyBytes:
		return corrupt("the body has %d bytes, the header says %d", r.body, r.h.BodyBytes)
	case r.crc.Sum32() != r.h.bodyCRC:
		return corrupt("body checksum mismatch")
	case n != r.keys || n != r.h.Keys:
		return corrupt("%d records, end marker says %d, header %d", r.keys, n, r.h.Keys)
	case r.dig.Sum() != r.h.Digest:
		return corrupt("data digest %s, header says %s", r.dig, FormatDigest(r.h.Digest))
	}
	if _, err := r.br.ReadByte(); err != io.EOF {
		return corrupt("data after the end marker")
	}
	return io.EOF
}

// ReadAll reads and checks a whole backup, calling fn (if not nil) for
// each record, and returns its header once every check has passed. An
// error from fn stops the read and is returned as it is.
func ReadAll(r io.Reader, fn func(Record) error) (Header, error) {
	rd, err := NewReader(r)
	if err != nil {
		return Header{}, err
	}
	for {
		rec, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return rd.Header(), nil
		}
		if err != nil {
			return Header{}, err
		}
		if fn != nil {
			if err := fn(rec); err != nil {
				return Header{}, err
			}
		}
	}
}
