package resp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
)

const (
	// maxDepth bounds how deeply reply arrays may nest, so a hostile peer
	// cannot drive ReadValue's recursion arbitrarily deep. Redis's own
	// replies nest a few levels at most.
	maxDepth = 128
	// maxPrealloc bounds the elements or bytes allocated ahead of the data
	// that fills them, so a declared length costs memory only as the
	// bytes actually arrive.
	maxPrealloc = 16
	bulkChunk   = 64 << 10
)

// Reader decodes RESP2 replies from a stream. It buffers its input, so the
// caller must not read the underlying reader directly afterwards. A Reader
// is not safe for concurrent use.
type Reader struct {
	br   *bufio.Reader
	lim  Limits
	line []byte // holds a reply line longer than br's buffer
}

// NewReader returns a Reader with DefaultLimits.
func NewReader(r io.Reader) *Reader { return NewReaderLimits(r, DefaultLimits()) }

// NewReaderLimits returns a Reader that rejects replies beyond l: bulk
// strings longer than MaxBulkLen, arrays with more than MaxArgs elements
// and lines longer than MaxInlineLen. Zero fields of l take their defaults.
func NewReaderLimits(r io.Reader, l Limits) *Reader {
	return &Reader{br: bufio.NewReader(r), lim: l.withDefaults()}
}

// ReadValue reads one complete reply. It returns io.EOF only when the
// stream ends cleanly between replies, io.ErrUnexpectedEOF when it ends
// inside one, and an error wrapping ErrProtocol for malformed input, after
// which the stream cannot be resynchronized.
func (r *Reader) ReadValue() (Value, error) { return r.readValue(0) }

func (r *Reader) readValue(depth int) (Value, error) {
	line, err := r.readLine()
	if err != nil {
		if depth > 0 && errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Value{}, err
	}
	typ, rest := line[0], line[1:]
	switch typ {
	case '+', '-':
		return Value{Type: typ, Str: slices.Clone(rest)}, nil
	case ':':
		n, ok := ParseInt(rest)
		if !ok {
			return Value{}, protoErr("invalid integer")
		}
		return Value{Type: ':', Int: n}, nil
	case '$':
		return r.readBulk(rest)
	case '*':
		return r.readArray(rest, depth)
	}
	return Value{}, protoErr(fmt.Sprintf("unknown reply type %q", typ))
}

// readLine returns the next line without its CRLF. The slice is valid only
// until the next read.
func (r *Reader) readLine() ([]byte, error) {
	line, err := r.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		r.line = append(r.line[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			if len(r.line) > r.lim.MaxInlineLen+2 {
				return nil, protoErr("too big reply line")
			}
			line, err = r.br.ReadSlice('\n')
			r.line = append(r.line, line...)
		}
		line = r.line
	}
	if err != nil {
		if errors.Is(err, io.EOF) && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if len(line) > r.lim.MaxInlineLen+2 {
		return nil, protoErr("too big reply line")
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, protoErr("invalid reply line")
	}
	return line[:len(line)-2], nil
}

func (r *Reader) readBulk(header []byte) (Value, error) {
	n, ok := ParseInt(header)
	if ok && n == -1 {
		return Value{Type: '$', Null: true}, nil
	}
	if !ok || n < 0 || n > r.lim.MaxBulkLen {
		return Value{}, protoErr(msgInvalidBulk)
	}
	data, err := r.readN(int(n) + 2)
	if err != nil {
		return Value{}, err
	}
	if data[n] != '\r' || data[n+1] != '\n' {
		return Value{}, protoErr("bulk string not followed by CRLF")
	}
	return Value{Type: '$', Str: data[:n:n]}, nil
}

// readN reads exactly n bytes into a buffer that grows as they arrive, so
// a huge declared length on a short stream allocates little.
func (r *Reader) readN(n int) ([]byte, error) {
	buf := make([]byte, 0, min(n, bulkChunk))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(n-len(buf), len(buf)))
		}
		m, err := io.ReadFull(r.br, buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+m]
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return buf, nil
}

func (r *Reader) readArray(header []byte, depth int) (Value, error) {
	n, ok := ParseInt(header)
	if ok && n == -1 {
		return Value{Type: '*', Null: true}, nil
	}
	if !ok || n < 0 || n > int64(r.lim.MaxArgs) {
		return Value{}, protoErr(msgInvalidMultibulk)
	}
	if depth >= maxDepth {
		return Value{}, protoErr("too deeply nested reply")
	}
	arr := make([]Value, 0, min(int(n), maxPrealloc))
	for range n {
		v, err := r.readValue(depth + 1)
		if err != nil {
			return Value{}, err
		}
		arr = append(arr, v)
	}
	return Value{Type: '*', Array: arr}, nil
}
