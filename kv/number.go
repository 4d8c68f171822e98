package kv

import (
	"math"

	"github.com/lockstep/lockstep/resp"
)

// Redis's error texts that several commands share.
const (
	errSyntax   = "ERR syntax error"
	errNotInt   = "ERR value is not an integer or out of range"
	errOverflow = "ERR increment or decrement would overflow"
)

// parseInt parses a decimal integer as Redis's string2ll does; INCR and
// every numeric argument use it, so " 1", "01" and "+1" are errors as in
// Redis.
func parseInt(b []byte) (int64, bool) { return resp.ParseInt(b) }

// parseCursor parses a SCAN cursor as Redis's strtoul-based check does:
// no leading space, an optional sign (a '-' wraps around, as strtoul's
// does), decimal digits up to 2^64-1, nothing after them. An empty cursor
// is 0, as it is in Redis.
func parseCursor(b []byte) (uint64, bool) {
	neg := false
	if len(b) > 0 && (b[0] == '+' || b[0] == '-') {
		neg = b[0] == '-'
		b = b[1:]
		if len(b) == 0 {
			// strtoul consumes nothing and leaves the sign unparsed.
			return 0, false
		}
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	if neg {
		v = -v
	}
	return v, true
}

// equalFold reports whether b equals the lower-case ASCII word, ignoring
// case, without allocating.
func equalFold(b []byte, word string) bool {
	if len(b) != len(word) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != word[i] {
			return false
		}
	}
	return true
}
