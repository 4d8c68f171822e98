// Package wire holds what the protocol cores share of their data: the
// entry type, the log of entries a replica keeps, and the primitives of
// their binary message codecs. Each core keeps its own message layout;
// this package only makes sure the pieces under it are written once.
// (Package group holds what they share of their bookkeeping.)
package wire

import (
	"encoding/binary"
	"fmt"
	"github.com/lockstep/lockstep/protocol"
)

// Entry is one update in a group's history (the contract's entry).
type Entry = protocol.Entry

// Log holds the consecutive entries Base+1 .. Last() that a replica must
// keep (which ones depends on the protocol).
//
// The entries sit in a ring that is kept when the log empties, so a head
// whose acks keep up, and whose log therefore empties and refills many
// times a second, appends without allocating. Trimmed slots are zeroed at
// once so their Data can be collected. A ring grown past keepRing for a
// burst (a replica that fell behind) is given back once the log has shrunk
// to a small part of it; one of the usual window's size is kept, or a
// middle whose log swings between tens and hundreds of entries would
// reallocate it all the time.
type Log struct {
	Base uint64 // seq of the newest entry already dropped (or restored)
	ring []Entry
	off  int // index in ring of entry Base+1
	n    int // entries held
	size int // total length of the held entries' Data
}

const (
	// minRing is the smallest ring Append allocates.
	minRing = 64
	// keepRing is the largest ring Trim never shrinks (32 KiB of headers).
	keepRing = 1024
)

// Last is the seq of the newest entry the log has ever held.
func (l *Log) Last() uint64 { return l.Base + uint64(l.n) }

// Len is the number of entries held.
func (l *Log) Len() int { return l.n }

// Bytes is the total length of the held entries' data.
func (l *Log) Bytes() int { return l.size }

// at returns the slot of the i-th entry held (0 is entry Base+1).
func (l *Log) at(i int) *Entry { return &l.ring[(l.off+i)&(len(l.ring)-1)] }

// Append adds e, which must carry seq Last()+1.
func (l *Log) Append(e Entry) {
	if l.n == len(l.ring) {
		l.resize(max(minRing, 2*len(l.ring)))
	}
	*l.at(l.n) = e
	l.n++
	l.size += len(e.Data)
}

// resize moves the entries into a new ring of size (a power of two that
// holds them all).
func (l *Log) resize(size int) {
	ring := make([]Entry, size)
	l.copyOut(ring, 0, l.n)
	l.ring, l.off = ring, 0
}

// copyOut copies entries i..j-1 (0 is entry Base+1) into dst.
func (l *Log) copyOut(dst []Entry, i, j int) {
	if i == j {
		return
	}
	lo, hi := (l.off+i)&(len(l.ring)-1), (l.off+j-1)&(len(l.ring)-1)+1
	if lo < hi {
		copy(dst, l.ring[lo:hi])
		return
	}
	k := copy(dst, l.ring[lo:])
	copy(dst[k:], l.ring[:hi])
}

// Slice returns a copy of the headers of entries lo..hi (inclusive); the
// caller guarantees Base < lo <= hi <= Last(). The Data slices are shared:
// entries are immutable once logged.
func (l *Log) Slice(lo, hi uint64) []Entry {
	out := make([]Entry, hi-lo+1)
	l.copyOut(out, int(lo-l.Base-1), int(hi-l.Base))
	return out
}

// Trim drops every entry with seq <= seq.
func (l *Log) Trim(seq uint64) {
	if seq <= l.Base {
		return
	}
	l.drop(int(min(seq-l.Base, uint64(l.n))))
}

// TrimOver drops the oldest entries with seq <= seq while the entries
// held total more than limit bytes: what a replica must keep is up to seq,
// and it retains up to limit bytes of older history besides, so that a
// replica that restarts a little behind can continue from it instead of
// needing a snapshot. TrimOver(seq, 0) is Trim(seq).
func (l *Log) TrimOver(seq uint64, limit int) {
	if seq <= l.Base {
		return
	}
	most := int(min(seq-l.Base, uint64(l.n)))
	n, size := 0, l.size
	for n < most && size > limit {
		size -= len(l.at(n).Data)
		n++
	}
	l.drop(n)
}

// drop removes the oldest n entries.
func (l *Log) drop(n int) {
	if n == 0 {
		return
	}
	for i := range n {
		l.size -= len(l.at(i).Data)
		*l.at(i) = Entry{}
	}
	l.off = (l.off + n) & (len(l.ring) - 1)
	l.n -= n
	l.Base += uint64(n)
	if len(l.ring) > keepRing && l.n <= len(l.ring)/8 {
		size := keepRing // the smallest that leaves room to grow 4 times over
		for size < 4*l.n {
			size *= 2
		}
		l.resize(size)
	}
}

// Receive appends the entries of a batch from upstream that continue the
// log, in order, and returns apply with the same entries appended. An
// entry the log already holds is skipped and sets dup (the sender is
// sending again, so acks may have been lost); the first entry beyond
// Last()+1 ends the batch and sets gap (the rest cannot be used until the
// gap is filled).
//
// When apply is empty and the appended entries are one run of ents (the
// usual case: a batch that continues the log, perhaps after a resent
// prefix), that run of ents itself is returned, capacity-limited, rather
// than a copy: the caller owns a decoded batch, and it saves an allocation
// per batch at every middle and tail.
func (l *Log) Receive(ents, apply []Entry) (_ []Entry, dup, gap bool) {
	// While lazy, the entries appended so far are ents[first:first+n] and
	// are not yet in apply.
	lazy := len(apply) == 0
	first, n := 0, 0
	for i, e := range ents {
		last := l.Last()
		if e.Seq <= last {
			dup = true
			continue
		}
		if e.Seq > last+1 {
			gap = true
			break
		}
		l.Append(e)
		switch {
		case !lazy:
			apply = append(apply, e)
		case n == 0:
			first, n = i, 1
		case first+n == i:
			n++
		default: // the run broke: copy it out and append from here on
			apply = append(append(apply, ents[first:first+n]...), e)
			lazy = false
		}
	}
	if lazy && n > 0 {
		return ents[first : first+n : first+n], dup, gap
	}
	return apply, dup, gap
}

// Reset empties the log and makes seq its base, as after a snapshot.
func (l *Log) Reset(seq uint64) {
	l.ring, l.off, l.n, l.size = nil, 0, 0, 0
	l.Base = seq
}

// AppendString appends a uvarint length and s.
func AppendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// AppendHeader appends what every core's messages begin with: the codec
// version and message type bytes, then From, To and Epoch.
func AppendHeader(b []byte, version, typ byte, from, to string, epoch uint64) []byte {
	b = append(b, version, typ)
	b = AppendString(b, from)
	b = AppendString(b, to)
	return binary.AppendUvarint(b, epoch)
}

// AppendEntries appends a uvarint count and, per entry, a varint seq delta
// from the previous entry (the first counting from 0), a uvarint length
// and the data: consecutive entries cost one byte of seq each.
func AppendEntries(b []byte, ents []Entry) []byte {
	b = binary.AppendUvarint(b, uint64(len(ents)))
	var prev uint64
	for _, e := range ents {
		b = binary.AppendVarint(b, int64(e.Seq-prev))
		prev = e.Seq
		b = binary.AppendUvarint(b, uint64(len(e.Data)))
		b = append(b, e.Data...)
	}
	return b
}

// Decoder reads from a byte slice, consuming it, and remembers the first
// error (wrapping its sentinel); once failed, every read returns a zero
// value. It never panics on any input.
type Decoder struct {
	b        []byte
	err      error
	sentinel error
}

// NewDecoder decodes b; errors wrap sentinel.
func NewDecoder(b []byte, sentinel error) *Decoder { return &Decoder{b: b, sentinel: sentinel} }

// Err is the first error, or nil.
func (d *Decoder) Err() error { return d.err }

// Fail records a decoding error about what.
func (d *Decoder) Fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", d.sentinel, what)
	}
	d.b = nil
}

// Byte reads one byte.
func (d *Decoder) Byte() byte {
	if len(d.b) == 0 {
		d.Fail("header")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

// Header is what AppendHeader writes after the version.
type Header struct {
	Type  byte
	From  string
	To    string
	Epoch uint64
}

// Header reads what AppendHeader wrote. Another version than version, or
// a type outside 1..maxType, is an error at once (wrapping the sentinel):
// the rest of the message cannot be read.
func (d *Decoder) Header(version, maxType byte) (Header, error) {
	if v := d.Byte(); v != version {
		return Header{}, fmt.Errorf("%w: version %d", d.sentinel, v)
	}
	h := Header{Type: d.Byte()}
	if h.Type < 1 || h.Type > maxType {
		return Header{}, fmt.Errorf("%w: type %d", d.sentinel, h.Type)
	}
	h.From = string(d.Bytes())
	h.To = string(d.Bytes())
	h.Epoch = d.Uvarint()
	return h, nil
}

// Uvarint reads an unsigned varint.
func (d *Decoder) Uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.Fail("uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *Decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.Fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// Bytes reads a length-prefixed byte string; the result aliases the input.
func (d *Decoder) Bytes() []byte {
	n := d.Uvarint()
	if n > uint64(len(d.b)) {
		d.Fail("length")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// Entries reads what AppendEntries wrote, copying the entries' data into
// one shared buffer no larger than the input; nil for none. The count is
// checked against the input first (every entry takes at least two bytes),
// so a corrupt count cannot make it allocate.
func (d *Decoder) Entries() []Entry {
	n := d.Uvarint()
	if d.err != nil || n == 0 {
		return nil
	}
	if n > uint64(len(d.b))/2 {
		d.Fail("entry count")
		return nil
	}
	ents := make([]Entry, n)
	arena := make([]byte, 0, len(d.b))
	var prev uint64
	for i := range ents {
		prev += uint64(d.varint())
		data := d.Bytes()
		if d.err != nil {
			return nil
		}
		ents[i].Seq = prev
		if len(data) > 0 {
			start := len(arena)
			arena = append(arena, data...)
			ents[i].Data = arena[start:len(arena):len(arena)]
		}
	}
	return ents
}

// Finish fails if input is left over, and returns the first error.
func (d *Decoder) Finish() error {
	if d.err == nil && len(d.b) > 0 {
		d.Fail("trailing bytes")
	}
	return d.err
}
