package transport

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

const (
	magic       = "LKST"
	wireVersion = 1
	// maxHelloString bounds the cluster id and name in a handshake, so that
	// a stray client on the peer port cannot make the acceptor allocate much.
	maxHelloString = 1024
	// maxStatusMsg bounds the error text in a handshake reply or an error
	// chunk.
	maxStatusMsg = 64 << 10
)

// connKind says what a connection carries after the handshake.
type connKind byte

const (
	kindMessages connKind = 1
	kindStream   connKind = 2
)

// Handshake status codes sent by the acceptor.
const (
	statusOK           byte = 0
	statusWrongCluster byte = 1
	statusRefused      byte = 2
)

// Stream chunk types.
const (
	chunkData  byte = 0
	chunkEnd   byte = 1
	chunkError byte = 2
)

const chunkHeaderLen = 5

// hello is the dialler's handshake.
type hello struct {
	kind    connKind
	cluster string
	name    string
}

func appendHello(b []byte, h hello) []byte {
	b = append(b, magic...)
	b = append(b, wireVersion, byte(h.kind))
	b = appendString(b, h.cluster)
	return appendString(b, h.name)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// readHello parses a handshake. Errors wrap ErrHandshake.
func readHello(r *bufio.Reader) (hello, error) {
	var head [6]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return hello{}, fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	if string(head[:4]) != magic {
		return hello{}, fmt.Errorf("%w: bad magic %q", ErrHandshake, head[:4])
	}
	if head[4] != wireVersion {
		return hello{}, fmt.Errorf("%w: protocol version %d, want %d", ErrHandshake, head[4], wireVersion)
	}
	h := hello{kind: connKind(head[5])}
	var err error
	if h.cluster, err = readString(r, maxHelloString); err != nil {
		return hello{}, fmt.Errorf("%w: cluster id: %w", ErrHandshake, err)
	}
	if h.name, err = readString(r, maxHelloString); err != nil {
		return hello{}, fmt.Errorf("%w: name: %w", ErrHandshake, err)
	}
	return h, nil
}

func readString(r *bufio.Reader, limit int) (string, error) {
	b, err := readFrame(r, limit)
	return string(b), err
}

// readFrame reads one uvarint-length-prefixed frame into a new slice.
func readFrame(r *bufio.Reader, limit int) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > uint64(limit) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, limit)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, unexpected(err)
	}
	return b, nil
}

// appendStatus encodes the acceptor's reply; msg is ignored for statusOK.
func appendStatus(b []byte, code byte, msg string) []byte {
	b = append(b, code)
	if code == statusOK {
		return b
	}
	if len(msg) > maxStatusMsg {
		msg = msg[:maxStatusMsg]
	}
	return appendString(b, msg)
}

// readStatus parses the acceptor's reply and turns a refusal into an error
// wrapping ErrWrongCluster or ErrHandshake.
func readStatus(r *bufio.Reader) error {
	code, err := r.ReadByte()
	if err != nil {
		return fmt.Errorf("%w: no reply: %w", ErrHandshake, err)
	}
	if code == statusOK {
		return nil
	}
	msg, err := readString(r, maxStatusMsg)
	if err != nil {
		return fmt.Errorf("%w: refused (code %d), reason unreadable: %w", ErrHandshake, code, err)
	}
	if code == statusWrongCluster {
		return fmt.Errorf("%w: %s", ErrWrongCluster, msg)
	}
	return fmt.Errorf("%w: refused: %s", ErrHandshake, msg)
}

// appendMessage frames one message payload.
func appendMessage(b, payload []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(payload)))
	return append(b, payload...)
}

// messageFrameLen is the encoded size of a message with an n-byte payload.
func messageFrameLen(n int) int {
	return uvarintLen(uint64(n)) + n
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// putChunkHeader fills the first chunkHeaderLen bytes of b.
func putChunkHeader(b []byte, typ byte, n int) {
	b[0] = typ
	binary.BigEndian.PutUint32(b[1:chunkHeaderLen], uint32(n))
}

// readChunkHeader reads a stream chunk header.
func readChunkHeader(r io.Reader) (typ byte, n int, err error) {
	var h [chunkHeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, 0, err
	}
	return h[0], int(binary.BigEndian.Uint32(h[1:])), nil
}

// unexpected turns an EOF in the middle of a unit into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
