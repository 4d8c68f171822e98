// Command etcdload drives Put load against an etcd cluster and reports
// throughput and latency percentiles in the same form as `lockstep bench`
// (the same JSON with --json), so scripts/bench-durable can set lockstep
// beside etcd with one parser. etcd's own benchmark tool is not packaged
// where the project's machines get their software; this is the part of it
// the comparison needs: --clients concurrent writers, each with its own
// connection, putting --value-size values under keys drawn uniformly from
// --keys, one request in flight per writer.
//
// It is a benchmarking tool, not part of lockstep:
//
//	go run ./bench/cmd/etcdload --endpoints http://127.0.0.1:2379 --leader --json
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep/lockstep/bench"
)

// options are the command line, checked by validate.
type options struct {
	endpoints string
	leader    bool
	procs     int
	asJSON    bool
	cfg       config
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "etcdload:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(o.procs))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	eps := strings.Split(o.endpoints, ",")
	if o.leader {
		if eps, err = findLeader(ctx, eps); err != nil {
			return err
		}
	}
	o.cfg.Addr = strings.Join(eps, ",")
	clients, err := dialAll(ctx, eps, o.cfg.Clients)
	if err != nil {
		return err
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	writers := make([]putter, len(clients))
	for i, c := range clients {
		writers[i] = c
	}
	res := load(ctx, o.cfg, writers)
	if o.asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	return bench.WriteSummary(stdout, res)
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	o := options{cfg: config{Seed: time.Now().UnixNano()}}
	fs := flag.NewFlagSet("etcdload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.endpoints, "endpoints", "http://127.0.0.1:2379", "comma-separated etcd client URLs; writers are spread over them")
	fs.BoolVar(&o.leader, "leader", false, "load only the endpoint of the current leader (as lockstep is loaded at its head)")
	fs.IntVar(&o.cfg.Clients, "clients", 50, "concurrent writers, each with its own connection and one Put in flight")
	fs.DurationVar(&o.cfg.Duration, "duration", 10*time.Second, "length of the measured run")
	fs.DurationVar(&o.cfg.Warmup, "warmup", 0, "load this long first without measuring")
	fs.IntVar(&o.cfg.Keys, "keys", 100000, "keys are drawn uniformly from this many")
	fs.IntVar(&o.cfg.ValueSize, "value-size", 100, "size in bytes of every value")
	fs.Int64Var(&o.cfg.Seed, "seed", o.cfg.Seed, "seed for key choice; writer i uses seed+i")
	fs.IntVar(&o.procs, "procs", 1, "CPU cores the generator may use (GOMAXPROCS); 0 means all")
	fs.BoolVar(&o.asJSON, "json", false, "print one JSON object, shaped like `lockstep bench --json`")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.procs < 0 {
		return o, fmt.Errorf("--procs %d must not be negative", o.procs)
	}
	return o, o.cfg.validate()
}

// findLeader asks each endpoint for its status and returns the one whose
// member is the leader.
func findLeader(ctx context.Context, eps []string) ([]string, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	for _, ep := range eps {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := cli.Status(sctx, ep)
		cancel()
		if err == nil && st.Header.MemberId == st.Leader {
			return []string{ep}, nil
		}
	}
	return nil, errors.New("no endpoint reports itself as the leader")
}

// dialAll opens n clients, each with its own gRPC connection, spread
// round-robin over eps, and checks that each one reaches the cluster, so
// that a wrong address fails here and not as a run of errors.
func dialAll(ctx context.Context, eps []string, n int) ([]*clientv3.Client, error) {
	clients := make([]*clientv3.Client, 0, n)
	fail := func(ep string, err error) ([]*clientv3.Client, error) {
		for _, c := range clients {
			c.Close()
		}
		return nil, fmt.Errorf("connect to %s: %w", ep, err)
	}
	for i := range n {
		ep := eps[i%len(eps)]
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Context: ctx})
		if err != nil {
			return fail(ep, err)
		}
		clients = append(clients, c)
		gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = c.Get(gctx, "etcdload-probe")
		cancel()
		if err != nil {
			return fail(ep, err)
		}
	}
	return clients, nil
}
