package resp

import "bytes"

// retainArgs bounds the argument bookkeeping a Parser keeps between
// commands, so one command with a million arguments does not pin its
// memory for the life of the connection.
const retainArgs = 1024

// Parser parses commands, pipelined or not, out of a connection's input
// buffer. It keeps the progress of a partly received multibulk command
// between calls, so a large bulk string arriving in many small reads is
// parsed in linear time. A Parser is not safe for concurrent use; use one
// per connection.
type Parser struct {
	lim Limits

	// The progress of a command that Parse has seen only part of. Offsets
	// count from the start of the buffer passed to Parse, so they survive
	// the caller moving or growing that buffer.
	multi bool  // the multibulk header has been read
	pos   int   // bytes of the pending command already parsed
	left  int   // arguments still to read
	bulk  int   // declared length of the argument being read; -1 before its header
	scan  int   // where the search for the current line's terminator resumes
	offs  []int // start and end offsets of the arguments read so far

	args   [][]byte // returned to the caller, reused by the next command
	inline []byte   // the decoded arguments of an inline command
}

// NewParser returns a Parser that enforces l; zero fields of l take their
// defaults.
func NewParser(l Limits) *Parser {
	p := &Parser{lim: l.withDefaults()}
	p.Reset()
	return p
}

// Parse parses the command at the start of buf.
//
// For a complete command it returns its arguments (args[0] is the command
// name) and the number of bytes it used. The arguments alias buf or the
// Parser's own memory and are valid only until the next call to Parse or
// Reset; the args slice itself is reused too.
//
// For an incomplete command it returns n == 0 and no error. The caller then
// reads more input and calls Parse again with a buffer that begins with the
// same bytes (it may have been moved or grown); the Parser resumes where it
// stopped rather than starting over. Passing a buffer with a different
// start, without calling Reset first, yields undefined results.
//
// An empty or all-blank inline line, and a multibulk of zero or negative
// count such as *0 or *-1, yields n > 0 and no arguments: Redis skips them
// silently, and so should the caller.
//
// Malformed input yields an error wrapping ErrProtocol, a *ProtocolError
// carrying Redis's text. The stream cannot be resynchronized after it; the
// caller replies with AppendError(b, err.Reply()) and closes the
// connection.
func (p *Parser) Parse(buf []byte) (args [][]byte, n int, err error) {
	if p.pos > len(buf) || p.scan > len(buf) {
		p.Reset() // the caller broke the contract; do not index past buf
	}
	if !p.multi {
		if len(buf) == 0 {
			return nil, 0, nil
		}
		if buf[0] != '*' {
			return p.parseInline(buf)
		}
		n, err := p.parseCount(buf)
		if err != nil {
			return nil, 0, err
		}
		if n > 0 {
			return p.args[:0], n, nil
		}
		if !p.multi {
			return nil, 0, nil
		}
	}
	return p.parseBulks(buf)
}

// Need reports, after Parse returned an incomplete command, how many bytes
// the buffer must hold for the argument being read to be complete,
// counting from the start of the buffer, or 0 if that is not known yet.
// It lets a server grow its buffer once for a large bulk string instead of
// doubling it repeatedly.
func (p *Parser) Need() int {
	if p.multi && p.bulk >= 0 {
		return p.pos + p.bulk + 2
	}
	return 0
}

// Reset discards the progress of a partly parsed command, so the next
// Parse starts afresh on whatever buffer it is given.
func (p *Parser) Reset() {
	p.multi = false
	p.pos, p.left, p.bulk, p.scan = 0, 0, -1, 0
	if cap(p.offs) > 2*retainArgs {
		p.offs = nil
	}
	p.offs = p.offs[:0]
}

// parseCount reads the multibulk header *N\r\n. It returns n > 0 when the
// whole command is done with (an empty multibulk), and otherwise sets
// p.multi once the header is complete.
func (p *Parser) parseCount(buf []byte) (n int, err error) {
	end, err := p.findLine(buf, msgTooBigMbulk)
	if err != nil || end < 0 {
		return 0, err
	}
	count, ok := ParseInt(buf[1:end])
	if !ok || count > int64(p.lim.MaxArgs) || buf[end+1] != '\n' {
		p.Reset()
		return 0, protoErr(msgInvalidMultibulk)
	}
	if count <= 0 {
		p.Reset()
		return end + 2, nil
	}
	p.multi = true
	p.left = int(count)
	p.pos, p.scan = end+2, end+2
	return 0, nil
}

// parseBulks reads the arguments of a multibulk command whose header has
// been read, resuming at p.pos.
func (p *Parser) parseBulks(buf []byte) ([][]byte, int, error) {
	for p.left > 0 {
		if p.bulk < 0 {
			if err := p.parseBulkLen(buf); err != nil || p.bulk < 0 {
				return nil, 0, err
			}
		}
		if len(buf)-p.pos < p.bulk+2 {
			return nil, 0, nil
		}
		end := p.pos + p.bulk
		// Redis skips the two bytes after the data unchecked; anything but
		// CRLF there means the declared length was wrong, so say so.
		if buf[end] != '\r' || buf[end+1] != '\n' {
			p.Reset()
			return nil, 0, protoErr(msgInvalidBulk)
		}
		p.offs = append(p.offs, p.pos, end)
		p.pos, p.scan = end+2, end+2
		p.bulk = -1
		p.left--
	}
	n := p.pos
	args := p.buildArgs(buf)
	p.Reset()
	return args, n, nil
}

// parseBulkLen reads the header $N\r\n of the next argument and sets
// p.bulk, or leaves p.bulk at -1 if the header is incomplete.
func (p *Parser) parseBulkLen(buf []byte) error {
	end, err := p.findLine(buf, msgTooBigBulk)
	if err != nil || end < 0 {
		return err
	}
	if c := buf[p.pos]; c != '$' {
		p.Reset()
		// Redis formats the byte with %c, raw; so does this.
		return protoErr("expected '$', got '" + string([]byte{c}) + "'")
	}
	n, ok := ParseInt(buf[p.pos+1 : end])
	if !ok || n < 0 || n > p.lim.MaxBulkLen || buf[end+1] != '\n' {
		p.Reset()
		return protoErr(msgInvalidBulk)
	}
	p.bulk = int(n)
	p.pos, p.scan = end+2, end+2
	return nil
}

// findLine looks for the '\r' ending the header line that starts at p.pos
// and returns its offset once the byte after it has arrived too, or -1 if
// the line is incomplete. Like Redis it reports tooBig when no '\r' comes
// within MaxInlineLen bytes; unlike Redis it also does so when the '\r'
// arrives late in the same read, so the outcome never depends on how the
// input was split. The search resumes at p.scan, so a long line arriving
// in small reads costs linear time.
func (p *Parser) findLine(buf []byte, tooBig string) (int, error) {
	start := p.pos
	limit := min(len(buf), start+p.lim.MaxInlineLen+1)
	p.scan = max(p.scan, start)
	if p.scan < limit {
		if i := bytes.IndexByte(buf[p.scan:limit], '\r'); i >= 0 {
			end := p.scan + i
			p.scan = end
			if end+1 >= len(buf) {
				return -1, nil
			}
			return end, nil
		}
		p.scan = limit
	}
	if len(buf)-start > p.lim.MaxInlineLen {
		p.Reset()
		return 0, protoErr(tooBig)
	}
	return -1, nil
}

// buildArgs turns the recorded offsets into slices of base. Each slice's
// capacity ends with its data, so a caller appending to an argument copies
// it instead of overwriting the bytes that follow.
func (p *Parser) buildArgs(base []byte) [][]byte {
	n := len(p.offs) / 2
	if cap(p.args) > 2*retainArgs && n <= retainArgs {
		p.args = nil
	}
	p.args = p.args[:0]
	for i := 0; i < len(p.offs); i += 2 {
		s, e := p.offs[i], p.offs[i+1]
		p.args = append(p.args, base[s:e:e])
	}
	return p.args
}
