package resp

import (
	"strconv"
	"strings"
)

// Value is one RESP2 reply as decoded by a Reader.
type Value struct {
	// Type is the reply's type byte: '+', '-', ':', '$' or '*'.
	Type byte
	// Str holds a simple string, an error's text (without the '-') or a
	// bulk string's contents.
	Str []byte
	// Int holds an integer reply.
	Int int64
	// Array holds an array reply's elements.
	Array []Value
	// Null marks the null bulk string $-1 and the null array *-1.
	Null bool
}

// String renders v for test failures and logs, in the spirit of redis-cli:
// OK, (error) ERR ..., (integer) 1, "bulk", (nil), ["a" (integer) 2].
// Bulk strings are Go-quoted so binary contents stay readable.
func (v Value) String() string {
	var sb strings.Builder
	v.write(&sb)
	return sb.String()
}

func (v Value) write(sb *strings.Builder) {
	switch v.Type {
	case '+':
		sb.Write(v.Str)
	case '-':
		sb.WriteString("(error) ")
		sb.Write(v.Str)
	case ':':
		sb.WriteString("(integer) ")
		sb.WriteString(strconv.FormatInt(v.Int, 10))
	case '$':
		if v.Null {
			sb.WriteString("(nil)")
			return
		}
		sb.WriteString(strconv.Quote(string(v.Str)))
	case '*':
		if v.Null {
			sb.WriteString("(nil array)")
			return
		}
		sb.WriteByte('[')
		for i, e := range v.Array {
			if i > 0 {
				sb.WriteByte(' ')
			}
			e.write(sb)
		}
		sb.WriteByte(']')
	default:
		sb.WriteString("(invalid type ")
		sb.WriteString(strconv.QuoteRune(rune(v.Type)))
		sb.WriteByte(')')
	}
}

// AppendValue appends v in RESP2 encoding, the inverse of Reader.ReadValue.
// It lets tests and fakes build replies from Values. A Value with an
// unknown Type appends nothing.
func AppendValue(b []byte, v Value) []byte {
	switch v.Type {
	case '+':
		b = append(b, '+')
		b = appendLine(b, v.Str)
		return append(b, '\r', '\n')
	case '-':
		b = append(b, '-')
		b = appendLine(b, v.Str)
		return append(b, '\r', '\n')
	case ':':
		return AppendInt(b, v.Int)
	case '$':
		if v.Null {
			return AppendNull(b)
		}
		return AppendBulk(b, v.Str)
	case '*':
		if v.Null {
			return AppendNullArray(b)
		}
		b = AppendArray(b, len(v.Array))
		for _, e := range v.Array {
			b = AppendValue(b, e)
		}
	}
	return b
}
