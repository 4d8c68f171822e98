package checkpoint

import (
	"encoding/binary"
	"errors"
	"slices"

	"github.com/lockstep/lockstep/protocol/internal/wire"
)

// ErrCorruptMessage is wrapped by every DecodeMessage error: the bytes are
// not a message this version can read. The connection they came on cannot
// be trusted any more and should be closed.
var ErrCorruptMessage = errors.New("lockstep: corrupt checkpoint message")

// codecVersion is the first byte of every encoded message.
const codecVersion = 1

// flagFinal is the only flag bit; any other set bit is corruption, so that
// every accepted encoding re-encodes to itself.
const flagFinal = 1

// AppendMessage appends the binary encoding of m to b:
//
//	version byte, type byte,
//	uvarint len(From), From, uvarint len(To), To,
//	uvarint Epoch, Seq, Prev, Head, Lineage, Offset,
//	flags byte (bit 0: Final), uvarint len(Data), Data.
//
// Framing is the transport's business.
func AppendMessage(b []byte, m Message) []byte {
	b = wire.AppendHeader(b, codecVersion, byte(m.Type), m.From, m.To, m.Epoch)
	for _, v := range [...]uint64{m.Seq, m.Prev, m.Head, m.Lineage, m.Offset} {
		b = binary.AppendUvarint(b, v)
	}
	var flags byte
	if m.Final {
		flags |= flagFinal
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(len(m.Data)))
	return append(b, m.Data...)
}

// DecodeMessage decodes one message that AppendMessage encoded, the whole
// of b. It never panics, allocates no more than the size of b, and copies
// Data, so b may be reused afterwards. Empty Data decodes as nil.
func DecodeMessage(b []byte) (Message, error) {
	d := wire.NewDecoder(b, ErrCorruptMessage)
	h, err := d.Header(codecVersion, byte(MsgSnapshotNeeded))
	if err != nil {
		return Message{}, err
	}
	m := Message{Type: MsgType(h.Type), From: h.From, To: h.To, Epoch: h.Epoch}
	for _, v := range [...]*uint64{&m.Seq, &m.Prev, &m.Head, &m.Lineage, &m.Offset} {
		*v = d.Uvarint()
	}
	flags := d.Byte()
	if flags&^flagFinal != 0 {
		d.Fail("flags")
	}
	m.Final = flags&flagFinal != 0
	if data := d.Bytes(); len(data) > 0 {
		m.Data = slices.Clone(data)
	}
	if err := d.Finish(); err != nil {
		return Message{}, err
	}
	return m, nil
}
