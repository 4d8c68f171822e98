package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lockstep/lockstep/bench"
)

// newBenchCmd builds `lockstep bench`, a GET/SET load generator for any
// RESP server, so a lockstep cluster can be measured with the same tool and
// numbers as redis-server.
func newBenchCmd() *cobra.Command {
	cfg := bench.DefaultConfig()
	var ratio string
	var asJSON bool
	procs := 1
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure throughput and latency of a RESP server with GET/SET load",
		Long: `bench drives GET/SET load against any server that speaks RESP (a lockstep
node, redis-server, ...) and reports throughput and latency percentiles.

Each client is one TCP connection that sends --pipeline requests, waits for
their replies, and repeats. A request's latency runs from the write of its
batch to the read of its reply, as in redis-benchmark. Keys are
key:000000000000 up to --keys, chosen at random from --seed.

The run lasts --duration (after an uncounted --warmup), or until exactly
--requests requests were answered. Progress goes to stderr once a second; the
summary (or, with --json, one JSON object) goes to stdout. Ctrl-C stops the
run and still prints the summary. Error replies are counted, and the first
distinct ones are shown; a connection lost mid-run ends the run with what was
measured and a non-zero exit status.`,
		Example: `  lockstep bench --addr 127.0.0.1:6390 --clients 50 --duration 10s
  lockstep bench --ratio 9:1 --pipeline 16 --requests 1000000 --json`,
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.GetRatio, cfg.SetRatio, err = bench.ParseRatio(ratio); err != nil {
				return err
			}
			if !cmd.Flags().Changed("seed") {
				cfg.Seed = time.Now().UnixNano()
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			if procs < 0 {
				return fmt.Errorf("%w: --procs %d must not be negative", bench.ErrInvalidConfig, procs)
			}
			if procs > 0 {
				// The generator shares the machine with the server it
				// measures; like single-threaded redis-benchmark, one
				// thread of Go code leaves the other cores to the server.
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			}
			return runBench(cmd, cfg, asJSON)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Addr, "addr", cfg.Addr, "host:port of the RESP server to load; a comma-separated list spreads clients over several nodes")
	f.IntVar(&cfg.WaitReplicas, "wait", 0, "follow every SET with WAIT <n> 0 and count it done when WAIT answers (Redis synchronous replication)")
	f.IntVar(&cfg.Clients, "clients", cfg.Clients, "number of concurrent connections, one goroutine each")
	f.DurationVar(&cfg.Duration, "duration", cfg.Duration, "length of the measured run (ignored when --requests is set)")
	f.Int64Var(&cfg.Requests, "requests", 0, "stop after exactly this many requests over all clients (0: run for --duration)")
	f.StringVar(&ratio, "ratio", "1:1", "GET:SET weights, e.g. 9:1 for read-heavy or 0:1 for SET only")
	f.IntVar(&cfg.Keys, "keys", cfg.Keys, "keyspace size: keys are drawn uniformly from this many")
	f.IntVar(&cfg.HotKeys, "hot-keys", 0, "a hot set: --hot-percent of the requests go to the first this many keys (0: uniform)")
	f.IntVar(&cfg.HotPercent, "hot-percent", 90, "with --hot-keys, the share of requests (0-100) that go to the hot set")
	f.IntVar(&cfg.ValueSize, "value-size", cfg.ValueSize, "size in bytes of every SET value")
	f.IntVar(&cfg.Pipeline, "pipeline", cfg.Pipeline, "requests each client sends before waiting for replies (1: no pipelining)")
	f.StringVar(&cfg.Password, "password", "", "send AUTH with this password on every connection first")
	f.BoolVar(&asJSON, "json", false, "print one JSON object on stdout instead of the summary, and no progress")
	f.Int64Var(&cfg.Seed, "seed", 0, "seed for key and operation choice, client i uses seed+i (default: from the clock; always printed)")
	f.DurationVar(&cfg.Warmup, "warmup", 0, "load the server this long first without measuring")
	f.IntVar(&procs, "procs", procs, "CPU cores the generator may use (GOMAXPROCS); 0 means all; raise it when the server runs elsewhere and one core cannot saturate it")
	return cmd
}

// runBench runs the benchmark with Ctrl-C wired to cancellation and prints
// the result; an error that ended the run early is returned after it.
func runBench(cmd *cobra.Command, cfg bench.Config, asJSON bool) error {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	stderr := cmd.ErrOrStderr()
	var progress = stderr
	if asJSON {
		progress = nil
	} else {
		cfg.ProgressInline = isTerminal(stderr)
		fmt.Fprintf(stderr, "lockstep bench: %s, %d clients, pipeline %d, seed %d\n",
			cfg.Addr, cfg.Clients, cfg.Pipeline, cfg.Seed)
	}
	res, runErr := bench.Run(ctx, cfg, progress)
	if errors.Is(runErr, bench.ErrInvalidConfig) || errors.Is(runErr, bench.ErrConnect) ||
		errors.Is(runErr, bench.ErrAuth) {
		return runErr // nothing was measured: the error says it all
	}
	out := cmd.OutOrStdout()
	if asJSON {
		enc := json.NewEncoder(out)
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		res.Error = "" // returned below, printed once by the caller
		if err := bench.WriteSummary(out, res); err != nil {
			return err
		}
	}
	return runErr
}

// isTerminal reports whether w is a character device, where a progress line
// can be rewritten in place instead of scrolling.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
