package chain

import (
	"encoding/binary"
	"errors"

	"github.com/lockstep/lockstep/protocol/internal/wire"
)

// ErrCorruptMessage is wrapped by every DecodeMessage error: the bytes are
// not a message this version can read. The connection they came on cannot
// be trusted any more and should be closed.
var ErrCorruptMessage = errors.New("lockstep: corrupt chain message")

// codecVersion is the first byte of every encoded message.
// Version 2 added Acked.
const codecVersion = 2

// AppendMessage appends the binary encoding of m to b:
//
//	version byte, type byte,
//	uvarint len(From), From, uvarint len(To), To,
//	uvarint Epoch, uvarint Seq, uvarint Acked,
//	entries as wire.AppendEntries writes them.
//
// Framing is the transport's business.
func AppendMessage(b []byte, m Message) []byte {
	b = wire.AppendHeader(b, codecVersion, byte(m.Type), m.From, m.To, m.Epoch)
	b = binary.AppendUvarint(b, m.Seq)
	b = binary.AppendUvarint(b, m.Acked)
	return wire.AppendEntries(b, m.Entries)
}

// DecodeMessage decodes one message that AppendMessage encoded, the whole
// of b. It never panics, allocates no more than a small multiple of len(b),
// and copies the entries' data, so b may be reused afterwards. Empty Data
// and an empty entry list decode as nil.
func DecodeMessage(b []byte) (Message, error) {
	d := wire.NewDecoder(b, ErrCorruptMessage)
	h, err := d.Header(codecVersion, byte(MsgSnapshotNeeded))
	if err != nil {
		return Message{}, err
	}
	m := Message{Type: MsgType(h.Type), From: h.From, To: h.To, Epoch: h.Epoch}
	m.Seq = d.Uvarint()
	m.Acked = d.Uvarint()
	m.Entries = d.Entries()
	if err := d.Finish(); err != nil {
		return Message{}, err
	}
	return m, nil
}
