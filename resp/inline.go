package resp

import "bytes"

// retainInline bounds the decoding buffer a Parser keeps between inline
// commands.
const retainInline = 4 << 10

// parseInline parses a telnet-style command line: arguments separated by
// blanks, with Redis's quoting rules, ended by "\n" or "\r\n". The search
// for the newline resumes at p.scan. Redis rejects only a line whose
// newline has not arrived within MaxInlineLen bytes; this also rejects a
// longer line that arrived whole, so the outcome never depends on how the
// input was split.
func (p *Parser) parseInline(buf []byte) ([][]byte, int, error) {
	maxLen := p.lim.MaxInlineLen
	// A line of maxLen bytes may be followed by "\r\n", so look that far.
	limit := min(len(buf), maxLen+2)
	nl := -1
	if p.scan < limit {
		if i := bytes.IndexByte(buf[p.scan:limit], '\n'); i >= 0 {
			nl = p.scan + i
		} else {
			p.scan = limit
		}
	}
	if nl < 0 {
		pending := len(buf)
		if buf[pending-1] == '\r' {
			pending-- // it may yet be the start of the line's "\r\n"
		}
		if pending > maxLen {
			p.Reset()
			return nil, 0, protoErr(msgTooBigInline)
		}
		return nil, 0, nil
	}
	line := buf[:nl]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	p.Reset()
	if len(line) > maxLen {
		return nil, 0, protoErr(msgTooBigInline)
	}
	args, err := p.splitArgs(line)
	if err != nil {
		return nil, 0, err
	}
	return args, nl + 1, nil
}

// splitArgs splits an inline command line the way Redis's sdssplitargs
// does, decoding into p.inline. sdssplitargs works on a C string, so a NUL
// byte ends the line there and here. (Redis's search for the newline also
// stops at a NUL, stalling the connection; this parser does not copy that.)
func (p *Parser) splitArgs(line []byte) ([][]byte, error) {
	if i := bytes.IndexByte(line, 0); i >= 0 {
		line = line[:i]
	}
	if cap(p.inline) > retainInline && len(line) <= retainInline {
		p.inline = nil // do not pin one long line's memory
	}
	p.inline = p.inline[:0]
	p.offs = p.offs[:0]
	i := 0
	for {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i == len(line) {
			break
		}
		start := len(p.inline)
		var ok bool
		if i, ok = p.token(line, i); !ok {
			p.offs = p.offs[:0]
			return nil, protoErr(msgUnbalanced)
		}
		p.offs = append(p.offs, start, len(p.inline))
	}
	args := p.buildArgs(p.inline)
	p.offs = p.offs[:0]
	return args, nil
}

// token decodes the argument starting at line[i] into p.inline and returns
// the offset after it, or false for unbalanced quotes. It is a port of the
// token loop of sdssplitargs, including its quirks: a quote may open in
// the middle of an argument, a closing quote must be followed by a blank
// or the end of the line, and only ' ', '\t', '\r' and '\n' end an
// unquoted argument although every C isspace byte separates arguments.
func (p *Parser) token(line []byte, i int) (int, bool) {
	at := func(j int) byte { // line as a C string: 0 past the end
		if j < len(line) {
			return line[j]
		}
		return 0
	}
	var inDouble, inSingle bool
	for done := false; !done; {
		c := at(i)
		switch {
		case inDouble:
			switch {
			case c == '\\' && at(i+1) == 'x' && isHex(at(i+2)) && isHex(at(i+3)):
				p.inline = append(p.inline, unhex(at(i+2))<<4|unhex(at(i+3)))
				i += 3
			case c == '\\' && at(i+1) != 0:
				i++
				p.inline = append(p.inline, unescape(line[i]))
			case c == '"':
				if n := at(i + 1); n != 0 && !isSpace(n) {
					return 0, false
				}
				done = true
			case c == 0:
				return 0, false
			default:
				p.inline = append(p.inline, c)
			}
		case inSingle:
			switch {
			case c == '\\' && at(i+1) == '\'':
				i++
				p.inline = append(p.inline, '\'')
			case c == '\'':
				if n := at(i + 1); n != 0 && !isSpace(n) {
					return 0, false
				}
				done = true
			case c == 0:
				return 0, false
			default:
				p.inline = append(p.inline, c)
			}
		default:
			switch c {
			case ' ', '\n', '\r', '\t', 0:
				done = true
			case '"':
				inDouble = true
			case '\'':
				inSingle = true
			default:
				p.inline = append(p.inline, c)
			}
		}
		if i < len(line) {
			i++
		}
	}
	return i, true
}

// isSpace is C's isspace in the "C" locale.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

func unescape(c byte) byte {
	switch c {
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	case 'b':
		return '\b'
	case 'a':
		return '\a'
	}
	return c
}
