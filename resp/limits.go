package resp

import "math"

// Limits bound what one command (or, for a Reader, one reply) may make the
// decoder allocate. Declared lengths above a limit are rejected as soon as
// they are read, before anything is allocated for them.
type Limits struct {
	// MaxBulkLen is the longest bulk string accepted; Redis's
	// proto-max-bulk-len, 512 MiB by default.
	MaxBulkLen int64
	// MaxArgs is the most elements in one multibulk (or reply array);
	// 1024*1024 by default, as in Redis before 7.0.
	MaxArgs int
	// MaxInlineLen is the longest inline (telnet-style) command line, and
	// also the longest length header or reply line; Redis's
	// PROTO_INLINE_MAX_SIZE, 64 KiB by default.
	MaxInlineLen int
}

// DefaultLimits returns Redis's limits.
func DefaultLimits() Limits {
	return Limits{
		MaxBulkLen:   512 << 20,
		MaxArgs:      1024 * 1024,
		MaxInlineLen: 64 << 10,
	}
}

// withDefaults replaces zero or negative fields with the defaults, so that
// Limits{} means "Redis's limits", and clamps the rest so that offset
// arithmetic on them cannot overflow an int.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxBulkLen <= 0 {
		l.MaxBulkLen = d.MaxBulkLen
	}
	if l.MaxArgs <= 0 {
		l.MaxArgs = d.MaxArgs
	}
	if l.MaxInlineLen <= 0 {
		l.MaxInlineLen = d.MaxInlineLen
	}
	l.MaxBulkLen = min(l.MaxBulkLen, int64(math.MaxInt/2))
	l.MaxArgs = min(l.MaxArgs, math.MaxInt32)
	l.MaxInlineLen = min(l.MaxInlineLen, math.MaxInt/4)
	return l
}
