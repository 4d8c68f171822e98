package backup

import (
	"fmt"
	"io"
	"time"
)

// progress prints a line to w at most once per interval, from the
// goroutine doing the work: the keys and bytes done so far, and the rates
// since the last line. A nil w prints nothing.
type progress struct {
	w     io.Writer
	what  string
	total int64 // keys expected; 0 if unknown
	every time.Duration
	now   func() time.Time

	last      time.Time
	lastBytes int64
	lastKeys  int64
}

func newProgress(w io.Writer, what string, total int64, every time.Duration, now func() time.Time) *progress {
	if every <= 0 {
		every = time.Second
	}
	return &progress{w: w, what: what, total: total, every: every, now: now, last: now()}
}

// update prints a line if one is due.
func (p *progress) update(bytes, keys int64) {
	if p.w == nil {
		return
	}
	now := p.now()
	dt := now.Sub(p.last)
	if dt < p.every {
		return
	}
	of := ""
	if p.total > 0 {
		of = fmt.Sprintf("/%d (%.0f%%)", p.total, 100*float64(keys)/float64(p.total))
	}
	fmt.Fprintf(p.w, "%s: %d%s keys, %s, %.0f keys/s, %s/s\n", p.what, keys, of, sizeString(bytes),
		float64(keys-p.lastKeys)/dt.Seconds(), sizeString(int64(float64(bytes-p.lastBytes)/dt.Seconds())))
	p.last, p.lastBytes, p.lastKeys = now, bytes, keys
}

// sizeString renders a byte count with a binary unit.
func sizeString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
