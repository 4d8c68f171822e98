package resp

import "strconv"

// AppendSimple appends the simple string reply +s\r\n. A simple string
// cannot hold a line break, so any '\r' or '\n' in s becomes a space.
func AppendSimple(b []byte, s string) []byte {
	b = append(b, '+')
	b = appendLine(b, s)
	return append(b, '\r', '\n')
}

// AppendOK appends +OK\r\n.
func AppendOK(b []byte) []byte { return append(b, "+OK\r\n"...) }

// AppendError appends the error reply -msg\r\n. The message includes its
// code, as in "ERR syntax error"; any '\r' or '\n' in it becomes a space so
// that text echoed from a client cannot break the reply stream.
func AppendError(b []byte, msg string) []byte {
	b = append(b, '-')
	b = appendLine(b, msg)
	return append(b, '\r', '\n')
}

// AppendInt appends the integer reply :n\r\n.
func AppendInt(b []byte, n int64) []byte {
	b = append(b, ':')
	b = strconv.AppendInt(b, n, 10)
	return append(b, '\r', '\n')
}

// AppendBulk appends v as a bulk string. A nil v is an empty bulk string,
// not a null; use AppendNull for that.
func AppendBulk(b []byte, v []byte) []byte {
	b = appendHeader(b, '$', len(v))
	b = append(b, v...)
	return append(b, '\r', '\n')
}

// AppendBulkString appends s as a bulk string.
func AppendBulkString(b []byte, s string) []byte {
	b = appendHeader(b, '$', len(s))
	b = append(b, s...)
	return append(b, '\r', '\n')
}

// AppendNull appends the null bulk string $-1\r\n.
func AppendNull(b []byte) []byte { return append(b, "$-1\r\n"...) }

// AppendNullArray appends the null array *-1\r\n.
func AppendNullArray(b []byte) []byte { return append(b, "*-1\r\n"...) }

// AppendArray appends the header of an array of n elements; the caller
// appends the n elements after it.
func AppendArray(b []byte, n int) []byte { return appendHeader(b, '*', n) }

func appendHeader(b []byte, typ byte, n int) []byte {
	b = append(b, typ)
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, '\r', '\n')
}

// appendLine appends s with every '\r' and '\n' replaced by a space.
func appendLine[T string | []byte](b []byte, s T) []byte {
	start := len(b)
	b = append(b, s...)
	for i := start; i < len(b); i++ {
		if b[i] == '\r' || b[i] == '\n' {
			b[i] = ' '
		}
	}
	return b
}
