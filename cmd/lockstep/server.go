package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/lockstep/lockstep/admin"
	"github.com/lockstep/lockstep/kv"
	"github.com/lockstep/lockstep/node"
	"github.com/lockstep/lockstep/resp"
	"github.com/lockstep/lockstep/server"
	"github.com/lockstep/lockstep/storage"
)

// serverFlags are the settings of 'lockstep server'.
type serverFlags struct {
	listen       string
	dataDir      string
	storage      string
	fsync        string
	requirePass  string
	adminAddr    string
	maxClients   int
	maxBulk      string
	maxArgs      int
	idleTimeout  time.Duration
	clusterID    string
	shutdownWait time.Duration
	logLevel     string
	logFormat    string
}

func newServerCmd() *cobra.Command {
	f := &serverFlags{}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a lockstep node",
		Long: `Run a lockstep node that serves Redis clients on --listen.

With no coordinator flags the node runs standalone: a group of one with
replication off. With --storage pebble (the default) every acknowledged write
is on disk in --data-dir when --fsync is always (the default); concurrent
writers share each fsync (group commit).

The node stops gracefully on SIGINT or SIGTERM: it stops accepting clients,
finishes the commands it has read, flushes storage and exits.`,
		Example: `  lockstep server --listen 127.0.0.1:6390 --data-dir ./data
  lockstep server --storage memory --requirepass s3cret`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServer(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:6390", "address for Redis clients (host:port; port 0 picks a free one)")
	fl.StringVar(&f.dataDir, "data-dir", "lockstep-data", "directory for the node's data (pebble storage)")
	fl.StringVar(&f.storage, "storage", "pebble", "storage engine: pebble (durable, on disk) or memory (lost on restart)")
	fl.StringVar(&f.fsync, "fsync", "always", "when a write is acknowledged: always (after it is on disk; group commit) or none (before, faster, a crash may lose recent writes)")
	fl.StringVar(&f.requirePass, "requirepass", "", "password clients must send with AUTH before other commands (empty: no password)")
	fl.StringVar(&f.adminAddr, "admin-addr", "", "address for the HTTP admin endpoint: /metrics, /healthz, /debug/pprof (empty: off)")
	fl.IntVar(&f.maxClients, "max-clients", 10000, "most client connections at once; more are refused with an error")
	fl.StringVar(&f.maxBulk, "proto-max-bulk-len", "512mb", "longest string argument a client may send (bytes, or with kb/mb/gb)")
	fl.IntVar(&f.maxArgs, "max-args", resp.DefaultLimits().MaxArgs, "most arguments in one command")
	fl.DurationVar(&f.idleTimeout, "idle-timeout", 0, "close client connections idle this long (0: never)")
	fl.StringVar(&f.clusterID, "cluster-id", "", "refuse to start if --data-dir belongs to another cluster id (empty: no check)")
	fl.DurationVar(&f.shutdownWait, "shutdown-timeout", 10*time.Second, "how long a graceful shutdown waits for clients to finish")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	return cmd
}

// settings is serverFlags validated and converted.
type settings struct {
	fsync  node.FsyncPolicy
	limits resp.Limits
	log    *slog.Logger
}

func (f *serverFlags) validate() (settings, error) {
	var s settings
	var err error
	if _, _, err := net.SplitHostPort(f.listen); err != nil {
		return s, fmt.Errorf("--listen %q: %w", f.listen, err)
	}
	if f.storage != "pebble" && f.storage != "memory" {
		return s, fmt.Errorf("--storage %q: want pebble or memory", f.storage)
	}
	if f.storage == "pebble" && f.dataDir == "" {
		return s, errors.New("--data-dir is required with --storage pebble")
	}
	if s.fsync, err = node.ParseFsyncPolicy(f.fsync); err != nil {
		return s, fmt.Errorf("--fsync: %w", err)
	}
	if f.maxClients < 1 {
		return s, fmt.Errorf("--max-clients %d: must be at least 1", f.maxClients)
	}
	if f.maxArgs < 1 {
		return s, fmt.Errorf("--max-args %d: must be at least 1", f.maxArgs)
	}
	s.limits = resp.DefaultLimits()
	s.limits.MaxArgs = f.maxArgs
	if s.limits.MaxBulkLen, err = parseBytes(f.maxBulk); err != nil || s.limits.MaxBulkLen < 1 {
		return s, fmt.Errorf("--proto-max-bulk-len %q: want a positive size such as 512mb", f.maxBulk)
	}
	if s.log, err = newLogger(f.logLevel, f.logFormat); err != nil {
		return s, err
	}
	return s, nil
}

func runServer(ctx context.Context, f *serverFlags) error {
	set, err := f.validate()
	if err != nil {
		return err
	}
	log := set.log
	store, err := openStore(f, log)
	if err != nil {
		return err
	}
	machine := kv.New(store, kv.Options{})
	n, err := node.New(node.Config{Machine: machine, Store: store, Fsync: set.fsync, Logger: log})
	if err != nil {
		_ = store.Close()
		return err
	}
	defer func() {
		if err := n.Close(); err != nil {
			log.Error("closing storage", "err", err)
		}
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := server.New(server.Config{
		Backend: n, RequirePass: f.requirePass, MaxClients: f.maxClients, Limits: set.limits,
		IdleTimeout: f.idleTimeout, Version: buildVersion(), Logger: log, Metrics: server.NewMetrics(reg),
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", f.listen, err)
	}
	return serveUntilSignal(ctx, f, srv, ln, reg, n, log)
}

func openStore(f *serverFlags, log *slog.Logger) (storage.Store, error) {
	if f.storage == "memory" {
		return storage.NewMemory(), nil
	}
	if err := os.MkdirAll(f.dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	dir := filepath.Join(f.dataDir, "pebble")
	st, err := storage.OpenPebble(dir, storage.PebbleOptions{ClusterID: f.clusterID, Logger: log.With("component", "pebble")})
	if err != nil {
		return nil, fmt.Errorf("open storage in %s: %w", dir, err)
	}
	return st, nil
}

// serveUntilSignal runs the client and admin endpoints until SIGINT or
// SIGTERM, then shuts down gracefully.
func serveUntilSignal(ctx context.Context, f *serverFlags, srv *server.Server, ln net.Listener, reg *prometheus.Registry, n *node.Node, log *slog.Logger) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 2)
	var adm *admin.Server
	if f.adminAddr != "" {
		var err error
		if adm, err = admin.Listen(f.adminAddr, reg, n.Err); err != nil {
			_ = ln.Close()
			return fmt.Errorf("--admin-addr %s: %w", f.adminAddr, err)
		}
		go func() { errc <- adm.Serve() }()
		log.Info("admin endpoint", "addr", adm.Addr().String())
	}
	go func() { errc <- srv.Serve(ln) }()
	sweepCtx, stopSweep := context.WithCancel(ctx)
	defer stopSweep()
	go n.RunExpirySweeper(sweepCtx, 100*time.Millisecond, 1000)
	log.Info("ready", "addr", ln.Addr().String(), "storage", f.storage, "fsync", n.Fsync().String(), "version", buildVersion())
	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "reason", "signal")
	case serveErr = <-errc:
		log.Error("serving stopped", "err", serveErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), f.shutdownWait)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("clients did not finish in time", "err", err)
	}
	if adm != nil {
		_ = adm.Shutdown(sctx)
	}
	return serveErr
}
