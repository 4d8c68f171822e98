package bench

import (
	"fmt"
	"io"
	"time"
)

// report prints a progress line every interval until allDone is closed: the
// measured time so far, requests answered so far and the rate over the last
// interval. Inline mode rewrites one terminal line and ends it at the end.
func report(sh *shared, clients []*client, w io.Writer, allDone <-chan struct{}) {
	inline := sh.cfg.ProgressInline
	show := func(line string) {
		if inline {
			fmt.Fprintf(w, "\r%s\x1b[K", line)
		} else {
			fmt.Fprintln(w, line)
		}
	}
	if sh.cfg.Warmup > 0 {
		show(fmt.Sprintf("warming up for %s", sh.cfg.Warmup))
	}
	var prevOps int64
	prevAt := sh.warmupEnd
	timer := time.NewTimer(time.Until(nextTick(sh, time.Now())))
	defer timer.Stop()
	for {
		select {
		case <-allDone:
			if inline {
				fmt.Fprintln(w)
			}
			return
		case now := <-timer.C:
			if now.Before(sh.warmupEnd) {
				show(fmt.Sprintf("warming up: %.1fs left", sh.warmupEnd.Sub(now).Seconds()))
			} else {
				var ops int64
				for _, c := range clients {
					ops += c.done.Load()
				}
				rate := float64(ops-prevOps) / now.Sub(prevAt).Seconds()
				show(fmt.Sprintf("%6.1fs  %10d ops  %10.0f ops/s",
					now.Sub(sh.warmupEnd).Seconds(), ops, rate))
				prevOps, prevAt = ops, now
			}
			timer.Reset(time.Until(nextTick(sh, now)))
		}
	}
}

// nextTick returns the next progress time after now. Ticks fall on whole
// intervals from the start during warmup and from the end of warmup after
// it, so measured lines read 1.0s, 2.0s, ... however long warmup was.
func nextTick(sh *shared, now time.Time) time.Time {
	every := sh.cfg.ProgressInterval
	if now.Before(sh.warmupEnd) {
		t := sh.start.Add((now.Sub(sh.start)/every + 1) * every)
		if t.Before(sh.warmupEnd) {
			return t
		}
		now = sh.warmupEnd
	}
	return sh.warmupEnd.Add((now.Sub(sh.warmupEnd)/every + 1) * every)
}
