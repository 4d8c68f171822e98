package pb

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrCorruptMessage is wrapped by every DecodeMessage error: the bytes are
// not a message this version can read. The connection they came on cannot
// be trusted any more and should be closed.
var ErrCorruptMessage = errors.New("lockstep: corrupt primary-backup message")

// codecVersion is the first byte of every encoded message.
const codecVersion = 1

// AppendMessage appends the binary encoding of m to b:
//
//	version byte, type byte,
//	uvarint len(From), From, uvarint len(To), To,
//	uvarint Epoch, uvarint Seq, uvarint Lineage, uvarint Commit,
//	uvarint len(Entries),
//	per entry: varint (Seq minus the previous entry's Seq, the first
//	counting from 0), uvarint len(Data), Data.
//
// Consecutive entries thus cost one byte of seq each. Framing is the
// transport's business.
func AppendMessage(b []byte, m Message) []byte {
	b = append(b, codecVersion, byte(m.Type))
	b = appendString(b, m.From)
	b = appendString(b, m.To)
	b = binary.AppendUvarint(b, m.Epoch)
	b = binary.AppendUvarint(b, m.Seq)
	b = binary.AppendUvarint(b, m.Lineage)
	b = binary.AppendUvarint(b, m.Commit)
	b = binary.AppendUvarint(b, uint64(len(m.Entries)))
	var prev uint64
	for _, e := range m.Entries {
		b = binary.AppendVarint(b, int64(e.Seq-prev))
		prev = e.Seq
		b = binary.AppendUvarint(b, uint64(len(e.Data)))
		b = append(b, e.Data...)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// DecodeMessage decodes one message that AppendMessage encoded, the whole
// of b. It never panics, allocates no more than a small multiple of len(b),
// and copies the entries' data, so b may be reused afterwards. Empty Data
// and an empty entry list decode as nil.
func DecodeMessage(b []byte) (Message, error) {
	d := decoder{b: b}
	if v := d.byte(); v != codecVersion {
		return Message{}, fmt.Errorf("%w: version %d", ErrCorruptMessage, v)
	}
	m := Message{Type: MsgType(d.byte())}
	if m.Type < MsgHello || m.Type > MsgSnapshotNeeded {
		return Message{}, fmt.Errorf("%w: type %d", ErrCorruptMessage, m.Type)
	}
	m.From = string(d.bytes())
	m.To = string(d.bytes())
	m.Epoch = d.uvarint()
	m.Seq = d.uvarint()
	m.Lineage = d.uvarint()
	m.Commit = d.uvarint()
	n := d.uvarint()
	// Every entry takes at least two bytes, which bounds the allocation.
	if d.err == nil && n > uint64(len(d.b))/2 {
		d.fail("entry count")
	}
	if d.err == nil && n > 0 {
		m.Entries = d.entries(int(n))
	}
	if d.err == nil && len(d.b) > 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return Message{}, d.err
	}
	return m, nil
}

// decoder reads from b, consuming it, and remembers the first error; once
// failed, every read returns a zero value.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", ErrCorruptMessage, what)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail("header")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes reads a length-prefixed byte string; the result aliases the input.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("length")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// entries reads n entries, copying their data into one shared buffer no
// larger than the input.
func (d *decoder) entries(n int) []Entry {
	ents := make([]Entry, n)
	arena := make([]byte, 0, len(d.b))
	var prev uint64
	for i := range ents {
		prev += uint64(d.varint())
		data := d.bytes()
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
