package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep/lockstep/bench"
)

// Histogram bounds, as in `lockstep bench`: 1 µs to a minute, 3 digits.
const (
	histMinUS  = 1
	histMaxUS  = int64(time.Minute / time.Microsecond)
	histDigits = 3
)

// putter is the part of an etcd client a writer uses; *clientv3.Client is
// one, and the test supplies a fake.
type putter interface {
	Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error)
}

// config describes one run.
type config struct {
	Addr      string
	Clients   int
	Keys      int
	ValueSize int
	Duration  time.Duration
	Warmup    time.Duration
	Seed      int64
}

func (c config) validate() error {
	switch {
	case c.Clients < 1:
		return errors.New("--clients must be at least 1")
	case c.Keys < 1:
		return errors.New("--keys must be at least 1")
	case c.ValueSize < 0:
		return errors.New("--value-size must not be negative")
	case c.Duration <= 0:
		return errors.New("--duration must be positive")
	case c.Warmup < 0:
		return errors.New("--warmup must not be negative")
	}
	return nil
}

// writer is one client's loop state; only its goroutine touches it until
// load merges the histograms.
type writer struct {
	p      putter
	rng    *rand.Rand
	ops    int64
	errs   int64
	sample string
	hist   *hdrhistogram.Histogram
}

// load runs one writer per putter for cfg.Warmup plus cfg.Duration and
// returns what the measured part saw. Puts that start before the end of
// the warm-up are not counted; every writer stops starting Puts at the end
// and the run lasts until the last one returns. Cancelling ctx ends it
// early with Interrupted set.
func load(ctx context.Context, cfg config, ps []putter) bench.Result {
	value := string(bytes.Repeat([]byte{'x'}, cfg.ValueSize))
	start := time.Now()
	measureFrom := start.Add(cfg.Warmup)
	end := measureFrom.Add(cfg.Duration)
	ws := make([]*writer, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		seed := uint64(cfg.Seed) + uint64(i)
		w := &writer{p: p, rng: rand.New(rand.NewPCG(seed, seed)), hist: hdrhistogram.New(histMinUS, histMaxUS, histDigits)}
		ws[i] = w
		wg.Go(func() { w.run(ctx, cfg, value, measureFrom, end) })
	}
	wg.Wait()
	elapsed := time.Since(measureFrom)
	if ctx.Err() == nil && elapsed > cfg.Duration {
		elapsed = cfg.Duration // the Puts in flight at the end were not counted past it
	}
	return summarize(cfg, ws, elapsed, ctx.Err() != nil)
}

func (w *writer) run(ctx context.Context, cfg config, value string, measureFrom, end time.Time) {
	key := make([]byte, 0, 16)
	for ctx.Err() == nil {
		t0 := time.Now()
		if !t0.Before(end) {
			return
		}
		key = fmt.Appendf(key[:0], "key:%012d", w.rng.IntN(cfg.Keys)) // as `lockstep bench` names keys
		_, err := w.p.Put(ctx, string(key), value)
		lat := time.Since(t0)
		if t0.Before(measureFrom) || time.Now().After(end) || ctx.Err() != nil {
			continue
		}
		w.ops++
		if err != nil {
			w.errs++
			if w.sample == "" {
				w.sample = err.Error()
			}
		}
		_ = w.hist.RecordValue(min(max(lat.Microseconds(), histMinUS), histMaxUS))
	}
}

// summarize merges the writers' counts into a Result shaped like that of
// `lockstep bench` with --ratio 0:1: every request is a SET.
func summarize(cfg config, ws []*writer, elapsed time.Duration, interrupted bool) bench.Result {
	all := hdrhistogram.New(histMinUS, histMaxUS, histDigits)
	var st bench.OpStats
	res := bench.Result{Addr: cfg.Addr, Clients: cfg.Clients, Pipeline: 1, Ratio: "0:1",
		Keys: cfg.Keys, ValueSize: cfg.ValueSize, Seed: cfg.Seed, Interrupted: interrupted}
	for _, w := range ws {
		st.Ops += w.ops
		st.Errors += w.errs
		all.Merge(w.hist)
		if w.sample != "" && len(res.ErrorSamples) < 5 {
			res.ErrorSamples = append(res.ErrorSamples, w.sample)
		}
	}
	secs := elapsed.Seconds()
	res.DurationS = math.Round(secs*1000) / 1000
	if secs > 0 {
		st.OpsPerSec = math.Round(float64(st.Ops)/secs*10) / 10
	}
	if all.TotalCount() > 0 {
		st.Latency = bench.Latency{P50: all.ValueAtQuantile(50), P99: all.ValueAtQuantile(99),
			P999: all.ValueAtQuantile(99.9), Max: all.Max(), Mean: math.Round(all.Mean()*10) / 10}
	}
	res.OpStats, res.Set = st, st
	return res
}
