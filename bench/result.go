package bench

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency summarises a latency distribution in microseconds.
type Latency struct {
	P50  int64   `json:"p50"`
	P99  int64   `json:"p99"`
	P999 int64   `json:"p999"`
	Max  int64   `json:"max"`
	Mean float64 `json:"mean"`
}

// OpStats are the counts, rate and latency of one kind of request, or of
// all of them.
type OpStats struct {
	Ops       int64   `json:"ops"`
	Errors    int64   `json:"errors"`
	OpsPerSec float64 `json:"ops_per_sec"`
	Latency   Latency `json:"latency_us"`
}

// Result is what a run measured. Its JSON form is the output of
// `lockstep bench --json`; the overall OpStats fields sit at the top level.
type Result struct {
	Addr      string  `json:"addr"`
	Clients   int     `json:"clients"`
	Pipeline  int     `json:"pipeline"`
	Ratio     string  `json:"ratio"`
	Keys      int     `json:"keys"`
	ValueSize int     `json:"value_size"`
	Seed      int64   `json:"seed"`
	DurationS float64 `json:"duration_s"`
	OpStats
	Get OpStats `json:"get"`
	Set OpStats `json:"set"`
	// ErrorSamples are the first few distinct error replies.
	ErrorSamples []string `json:"error_samples,omitempty"`
	// Interrupted is set when the caller's context ended the run early.
	Interrupted bool `json:"interrupted,omitempty"`
	// Error is the text of the error Run returned with this result, if any.
	Error string `json:"error,omitempty"`
}

// newResult fills the description of the run, before anything is measured.
func newResult(cfg Config) Result {
	return Result{
		Addr:      cfg.Addr,
		Clients:   cfg.Clients,
		Pipeline:  cfg.Pipeline,
		Ratio:     fmt.Sprintf("%d:%d", cfg.GetRatio, cfg.SetRatio),
		Keys:      cfg.Keys,
		ValueSize: cfg.ValueSize,
		Seed:      cfg.Seed,
	}
}

// merge folds the clients' private statistics into r. It runs once, after
// every client goroutine has returned.
func (r *Result) merge(clients []*client, elapsed time.Duration) {
	get, set, all := newOpStats(), newOpStats(), newOpStats()
	for _, c := range clients {
		for _, pair := range [][2]*opStats{{&get, &c.get}, {&set, &c.set}} {
			pair[0].ops += pair[1].ops
			pair[0].errors += pair[1].errors
			pair[0].hist.Merge(pair[1].hist)
		}
		for _, s := range c.samples {
			r.addSample(s)
		}
	}
	all.ops, all.errors = get.ops+set.ops, get.errors+set.errors
	all.hist.Merge(get.hist)
	all.hist.Merge(set.hist)
	secs := elapsed.Seconds()
	r.DurationS = round(secs, 3)
	r.OpStats = summarize(all, secs)
	r.Get = summarize(get, secs)
	r.Set = summarize(set, secs)
}

func (r *Result) addSample(s string) {
	if len(r.ErrorSamples) >= maxSamples {
		return
	}
	for _, have := range r.ErrorSamples {
		if have == s {
			return
		}
	}
	r.ErrorSamples = append(r.ErrorSamples, s)
}

func summarize(o opStats, secs float64) OpStats {
	s := OpStats{Ops: o.ops, Errors: o.errors, Latency: latency(o.hist)}
	if secs > 0 {
		s.OpsPerSec = round(float64(o.ops)/secs, 1)
	}
	return s
}

func latency(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		P50:  h.ValueAtQuantile(50),
		P99:  h.ValueAtQuantile(99),
		P999: h.ValueAtQuantile(99.9),
		Max:  h.Max(),
		Mean: round(h.Mean(), 1),
	}
}

func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}

// WriteSummary prints r for a person: the run's parameters, the totals, and
// one latency row each for all requests, GET and SET.
func WriteSummary(w io.Writer, r Result) error {
	state := ""
	if r.Interrupted {
		state = " (interrupted)"
	}
	fmt.Fprintf(w, "addr %s, %d clients, pipeline %d, ratio %s (get:set), %d keys, %d-byte values, seed %d\n",
		r.Addr, r.Clients, r.Pipeline, r.Ratio, r.Keys, r.ValueSize, r.Seed)
	fmt.Fprintf(w, "%.3fs%s: %d ops, %d errors, %.1f ops/s\n\n",
		r.DurationS, state, r.Ops, r.Errors, r.OpsPerSec)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tops\terrors\tops/s\tmean µs\tp50 µs\tp99 µs\tp99.9 µs\tmax µs\t")
	for _, row := range []struct {
		name string
		s    OpStats
	}{{"all", r.OpStats}, {"GET", r.Get}, {"SET", r.Set}} {
		l := row.s.Latency
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.1f\t%d\t%d\t%d\t%d\t\n",
			row.name, row.s.Ops, row.s.Errors, row.s.OpsPerSec, l.Mean, l.P50, l.P99, l.P999, l.Max)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.ErrorSamples) > 0 {
		fmt.Fprintln(w, "\nfirst distinct error replies:")
		for _, s := range r.ErrorSamples {
			fmt.Fprintf(w, "  -%s\n", s)
		}
	}
	if r.Error != "" {
		_, err := fmt.Fprintf(w, "\nrun ended early: %s\n", r.Error)
		return err
	}
	return nil
}
