package kv

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"

	"github.com/lockstep/lockstep/statemachine"
	"github.com/lockstep/lockstep/storage"
)

// Snapshot stream layout:
//
//	magic "LSKV" | version byte | applied seq (8 bytes, big endian)
//	records, each: tagEntry | uvarint len(key) key | uvarint len(value) value | uvarint expireAt
//	tagEnd | uvarint record count | CRC-32C of every preceding byte (4 bytes, big endian)
//
// Expired entries are kept: whether an entry has expired depends on whose
// clock asks, and a restored replica must hold exactly what its source held.
const (
	snapMagic   = "LSKV"
	snapVersion = 1
	tagEntry    = 'E'
	tagEnd      = 'Z'
	// maxSnapField bounds a key or value length read from a stream, so a
	// corrupt length fails instead of reserving gigabytes.
	maxSnapField = maxStringLen
)

// Snapshot writes the state as of one applied sequence number to w. It
// reads from a store View, so it may run while Apply continues.
func (m *Machine) Snapshot(w io.Writer) error {
	snap, err := m.OpenSnapshot()
	if err != nil {
		return err
	}
	defer snap.Close()
	return snap.Write(w)
}

// OpenSnapshot captures the state as of the last applied update without
// copying it. A replication runtime calls it under its own lock, so the
// snapshot's Seq and the protocol's bookkeeping agree, and writes it out
// after releasing the lock.
func (m *Machine) OpenSnapshot() (statemachine.Snapshot, error) {
	view, err := m.store.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("kv: snapshot: %w", err)
	}
	return &snapshot{view: view}, nil
}

// snapshot is an open store View waiting to be written out.
type snapshot struct{ view storage.View }

var _ statemachine.DataSnapshot = (*snapshot)(nil)

func (s *snapshot) Seq() uint64  { return s.view.AppliedSeq() }
func (s *snapshot) Close() error { return s.view.Close() }

// DataKeys is the number of entries the view holds, expired or not.
func (s *snapshot) DataKeys() int64 { return s.view.Stats().Keys }

// ScanData lists the entries for a backup (statemachine.DataSnapshot).
// Expired entries are listed as Write keeps them: whether one has expired
// is for the reader's clock to say.
func (s *snapshot) ScanData(fn func(key, value []byte, expireAt int64) bool) error {
	err := s.view.Scan(nil, func(key []byte, e storage.Entry) bool {
		return fn(key, e.Value, e.ExpireAt)
	})
	if err != nil {
		return fmt.Errorf("kv: snapshot scan: %w", err)
	}
	return nil
}

// Write streams the snapshot in the layout described above.
func (s *snapshot) Write(w io.Writer) error {
	view := s.view
	sw := &snapWriter{w: bufio.NewWriterSize(w, 64<<10), crc: newCRC()}
	sw.rec = append(sw.rec[:0], snapMagic...)
	sw.rec = append(sw.rec, snapVersion)
	sw.rec = binary.BigEndian.AppendUint64(sw.rec, view.AppliedSeq())
	sw.flushRecord()
	var count uint64
	err := view.Scan(nil, func(key []byte, e storage.Entry) bool {
		sw.rec = append(sw.rec[:0], tagEntry)
		sw.rec = appendBytes(sw.rec, key)
		sw.rec = appendBytes(sw.rec, e.Value)
		sw.rec = binary.AppendUvarint(sw.rec, uint64(e.ExpireAt))
		count++
		return sw.flushRecord()
	})
	if err != nil {
		return fmt.Errorf("kv: snapshot scan: %w", err)
	}
	sw.rec = append(sw.rec[:0], tagEnd)
	sw.rec = binary.AppendUvarint(sw.rec, count)
	sw.flushRecord()
	if sw.err != nil {
		return fmt.Errorf("kv: write snapshot: %w", sw.err)
	}
	sw.rec = binary.BigEndian.AppendUint32(sw.rec[:0], sw.crc.Sum32())
	if _, err := sw.w.Write(sw.rec); err != nil {
		return fmt.Errorf("kv: write snapshot: %w", err)
	}
	if err := sw.w.Flush(); err != nil {
		return fmt.Errorf("kv: write snapshot: %w", err)
	}
	return nil
}

// snapWriter checksums and writes one record at a time, keeping the first
// error so the scan can stop on it.
type snapWriter struct {
	w   *bufio.Writer
	crc hash.Hash32
	rec []byte
	err error
}

func (sw *snapWriter) flushRecord() bool {
	if sw.err != nil {
		return false
	}
	sw.crc.Write(sw.rec)
	_, sw.err = sw.w.Write(sw.rec)
	return sw.err == nil
}

// Restore replaces the state with the snapshot read from r. The stream is
// read and verified in full before the store changes, and then applied as
// one batch (a clear followed by every entry) numbered with the snapshot's
// sequence number, so a failure leaves the old state intact and a crash
// during Restore cannot leave a durable store half loaded. The snapshot
// replaces the state whatever their seqs (a storage.Batch with Replace):
// whether an older one is welcome is the protocol's call, and a
// primary-backup replica that applied a deposed primary's entries does go
// back to the new primary's history. Restore reads r to its end and rejects anything
// after the snapshot, so a caller streaming more data on the same
// connection must hand it a reader bounded to the snapshot.
func (m *Machine) Restore(r io.Reader) error {
	return m.RestoreWithMeta(r, nil)
}

// RestoreWithMeta is Restore with metadata ops (storage.OpKind.IsMeta) in
// the same Replace batch, after the snapshot's entries. A wrapper that
// keeps state of its own in the store replaces it this way (OpClearMeta,
// then its records), so a crash cannot pair the new keyspace with the old
// records.
func (m *Machine) RestoreWithMeta(r io.Reader, meta []storage.Op) error {
	if err := checkMeta(meta); err != nil {
		return fmt.Errorf("kv: restore snapshot: %w", err)
	}
	seq, ops, err := readSnapshot(bufio.NewReaderSize(r, 64<<10))
	if err != nil {
		return err
	}
	if seq == 0 && len(ops) == 1 && !setsMeta(meta) {
		fresh, err := m.fresh()
		if err != nil {
			return err
		}
		if fresh {
			// An empty snapshot of a fresh machine onto a fresh store:
			// there is nothing to do, and no batch may be numbered 0.
			m.cursors.reset()
			return nil
		}
	}
	ops = append(ops, meta...)
	if err := m.store.Apply(&storage.Batch{Ops: ops, Seq: seq, Replace: true}); err != nil {
		return fmt.Errorf("kv: restore snapshot at %d: %w", seq, err)
	}
	m.cursors.reset()
	return nil
}

// setsMeta reports whether ops write any metadata key.
func setsMeta(ops []storage.Op) bool {
	for i := range ops {
		if ops[i].Kind == storage.OpSetMeta {
			return true
		}
	}
	return false
}

// fresh reports whether the store holds nothing: no applied update, no
// key and no metadata.
func (m *Machine) fresh() (bool, error) {
	if m.store.AppliedSeq() != 0 || m.store.Stats().Keys != 0 {
		return false, nil
	}
	empty := true
	err := m.store.ScanMeta(nil, func(_, _ []byte) bool {
		empty = false
		return false
	})
	if err != nil {
		return false, fmt.Errorf("kv: restore snapshot: %w", err)
	}
	return empty, nil
}

// readSnapshot decodes and verifies a whole snapshot stream. The ops it
// returns start with a clear.
func readSnapshot(br *bufio.Reader) (uint64, []storage.Op, error) {
	sr := &snapReader{r: br, crc: newCRC()}
	head := sr.fixed(len(snapMagic) + 1 + 8)
	if sr.err == nil && (string(head[:4]) != snapMagic || head[4] != snapVersion) {
		return 0, nil, corruptSnapshot("bad header %q", head[:5])
	}
	seq := binary.BigEndian.Uint64(head[5:])
	ops := []storage.Op{{Kind: storage.OpClear}}
	for sr.err == nil {
		switch tag := sr.byte(); {
		case sr.err != nil:
		case tag == tagEntry:
			ops = append(ops, sr.entry())
		case tag == tagEnd:
			return seq, ops, sr.finish(uint64(len(ops) - 1))
		default:
			return 0, nil, corruptSnapshot("unknown record tag %d", tag)
		}
	}
	return 0, nil, sr.err
}

// newCRC returns the snapshot checksum, CRC-32C, which modern CPUs compute
// in hardware.
func newCRC() hash.Hash32 { return crc32.New(crc32.MakeTable(crc32.Castagnoli)) }

func corruptSnapshot(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{statemachine.ErrCorruptSnapshot}, args...)...)
}

// snapReader reads snapshot fields, folding every byte into the checksum
// and turning any read error into ErrCorruptSnapshot (a stream cut short
// is as unusable as a damaged one). After the first error every read
// returns zero values.
type snapReader struct {
	r   *bufio.Reader
	crc hash.Hash32
	err error
	one [1]byte
}

func (sr *snapReader) fail(err error) {
	if sr.err != nil {
		return
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		sr.err = corruptSnapshot("truncated")
		return
	}
	sr.err = fmt.Errorf("%w: read: %w", statemachine.ErrCorruptSnapshot, err)
}

func (sr *snapReader) byte() byte {
	if sr.err != nil {
		return 0
	}
	c, err := sr.r.ReadByte()
	if err != nil {
		sr.fail(err)
		return 0
	}
	sr.one[0] = c
	sr.crc.Write(sr.one[:])
	return c
}

func (sr *snapReader) uvarint() uint64 {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		c := sr.byte()
		if sr.err != nil {
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
	sr.fail(corruptSnapshot("bad varint"))
	return 0
}

// fixed reads exactly n bytes. It grows its buffer as data arrives rather
// than trusting n up front.
func (sr *snapReader) fixed(n int) []byte {
	if sr.err != nil {
		return make([]byte, n)
	}
	const chunk = 1 << 20
	buf := make([]byte, 0, min(n, chunk))
	for len(buf) < n {
		k := min(n-len(buf), chunk)
		buf = append(buf, make([]byte, k)...)
		if _, err := io.ReadFull(sr.r, buf[len(buf)-k:]); err != nil {
			sr.fail(err)
			return make([]byte, n)
		}
	}
	sr.crc.Write(buf)
	return buf
}

func (sr *snapReader) field() []byte {
	n := sr.uvarint()
	if n > maxSnapField {
		sr.fail(corruptSnapshot("field of %d bytes", n))
	}
	if sr.err != nil {
		return nil
	}
	return sr.fixed(int(n))
}

func (sr *snapReader) entry() storage.Op {
	key := sr.field()
	value := sr.field()
	exp := sr.uvarint()
	if exp > math.MaxInt64 {
		sr.fail(corruptSnapshot("expiry %d", exp))
	}
	return storage.Op{Kind: storage.OpSet, Key: key, Entry: storage.Entry{Value: value, ExpireAt: int64(exp)}}
}

// finish checks the record count and the checksum, and that nothing
// follows them.
func (sr *snapReader) finish(count uint64) error {
	n := sr.uvarint()
	want := sr.crc.Sum32()
	var sum [4]byte
	if sr.err == nil {
		if _, err := io.ReadFull(sr.r, sum[:]); err != nil {
			sr.fail(err)
		}
	}
	switch {
	case sr.err != nil:
		return sr.err
	case n != count:
		return corruptSnapshot("%d records, end marker says %d", count, n)
	case binary.BigEndian.Uint32(sum[:]) != want:
		return corruptSnapshot("checksum mismatch")
	}
	if _, err := sr.r.ReadByte(); err != io.EOF {
		return corruptSnapshot("data after the end marker")
	}
	return nil
}
