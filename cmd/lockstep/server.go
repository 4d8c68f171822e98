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
	"github.com/lockstep/lockstep/replica"
	"github.com/lockstep/lockstep/resp"
	"github.com/lockstep/lockstep/server"
	"github.com/lockstep/lockstep/storage"
)

// serverFlags are the settings of 'lockstep server'.
type serverFlags struct {
	listen      string
	dataDir     string
	storage     string
	fsync       string
	requirePass string
	// requirePassFile holds the password instead (--requirepass-file).
	requirePassFile string
	adminAddr       string
	maxClients      int
	maxBulk         string
	maxArgs         int
	idleTimeout     time.Duration
	clusterID       string
	shutdownWait    time.Duration
	logLevel        string
	logFormat       string
	cluster         clusterFlags
}

func newServerCmd() *cobra.Command {
	f := &serverFlags{}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a lockstep node",
		Long: `Run a lockstep node that serves Redis clients on --listen.

With no coordinator flags the node runs standalone: a group of one with
replication off. With --etcd-endpoints and --name it joins a replication
group coordinated by etcd, which runs --protocol: chain (the default),
primary-backup, or checkpoint. The first --bootstrap-expect nodes form the
group; later ones join behind the tail, or as a backup, after receiving a
snapshot. Any node serves any client: writes are forwarded to the head or
primary, reads to the tail or primary. With --storage pebble (the default) every acknowledged write
is on disk in --data-dir when --fsync is always (the default); concurrent
writers share each fsync (group commit).

Failure detection: a node holds a coordinator lease (--lease-ttl); a node
that stops renewing it is removed when it expires, and stops serving
before that can happen. A node whose process dies is removed at once: its
watchdog process (--fence-on-exit) sees it end and revokes the lease.

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
	fl.StringVar(&f.requirePass, "requirepass", "", "password clients must send with AUTH before other commands (empty: no password); it shows in ps, so prefer --requirepass-file or $"+envRequirePass+". Every node of a group needs the same one: a node forwards its clients' commands to the head or tail with it")
	fl.StringVar(&f.requirePassFile, "requirepass-file", "", "file holding the --requirepass password (its first line)")
	fl.StringVar(&f.adminAddr, "admin-addr", "", "address for the HTTP admin endpoint: /metrics, /healthz, /debug/pprof (empty: off)")
	fl.IntVar(&f.maxClients, "max-clients", 10000, "most client connections at once; more are refused with an error")
	fl.StringVar(&f.maxBulk, "proto-max-bulk-len", "512mb", "longest string argument a client may send (bytes, or with kb/mb/gb)")
	fl.IntVar(&f.maxArgs, "max-args", resp.DefaultLimits().MaxArgs, "most arguments in one command")
	fl.DurationVar(&f.idleTimeout, "idle-timeout", 0, "close client connections idle this long (0: never)")
	fl.StringVar(&f.clusterID, "cluster-id", "", "refuse to start if --data-dir belongs to another cluster id (empty: no check)")
	fl.DurationVar(&f.shutdownWait, "shutdown-timeout", 10*time.Second, "how long a graceful shutdown waits for clients to finish")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	c := &f.cluster
	fl.StringVar(&c.etcd, "etcd-endpoints", "", "comma-separated etcd client URLs; joins a replication group (empty: standalone)")
	fl.StringVar(&c.name, "name", "", "this node's unique name in the cluster (required with --etcd-endpoints)")
	fl.StringVar(&c.peerAddr, "peer-addr", "127.0.0.1:0", "address for replication traffic from other nodes (port 0 picks a free one)")
	fl.StringVar(&c.advertiseAddr, "advertise-addr", "", "client address other nodes and 'lockstep status' publish for this node (host or host:port; empty: the --listen address, or this machine's first non-loopback IP for a wildcard such as 0.0.0.0)")
	fl.StringVar(&c.advertisePeerAddr, "advertise-peer-addr", "", "replication address peers dial for this node (host or host:port; empty: as --advertise-addr does for --peer-addr)")
	fl.StringVar(&c.cluster, "cluster", "lockstep", "cluster name: the etcd key prefix shared by the nodes of one cluster")
	fl.StringVar(&c.group, "group", "default", "replication group this node serves")
	fl.StringVar(&c.protocol, "protocol", "", "replication protocol: chain, primary-backup or checkpoint (empty: the group's own, or chain for a new group); a node is refused by a group that runs another")
	fl.DurationVar(&c.cpInterval, "checkpoint-interval", replica.DefaultCheckpointInterval, "checkpoint protocol: epoch length; the primary ships the state its writes dirtied once per epoch, and replies wait for it")
	fl.StringVar(&c.logRetention, "log-retention", "64mb", "chain and primary-backup: how much committed history each replica keeps in memory (like Redis's repl-backlog-size), so that a node restarted after a clean stop catches up from it instead of by a full snapshot; 0 keeps none")
	fl.IntVar(&c.cpBytes, "checkpoint-bytes", replica.DefaultCheckpointBytes, "checkpoint protocol: an epoch whose dirty state passes this many bytes is cut early")
	fl.DurationVar(&c.leaseTTL, "lease-ttl", 2*time.Second, "coordinator lease: a node silent this long is removed; it stops serving before then")
	fl.BoolVar(&c.fenceOnExit, "fence-on-exit", true, "start a watchdog process that fences this node the moment its process ends (crash, kill -9), so its group fails over at once instead of when the lease expires")
	fl.IntVar(&c.bootstrapExpect, "bootstrap-expect", 1, "how many nodes form a new group's first configuration")
	fl.Float64Var(&c.faults.DropRate, "fault-drop-rate", 0, "testing only: drop this fraction of outgoing replication messages")
	fl.DurationVar(&c.faults.Delay, "fault-delay", 0, "testing only: delay every outgoing replication message this long")
	fl.DurationVar(&c.faults.Jitter, "fault-jitter", 0, "testing only: add up to this much random delay to each replication message")
	fl.Uint64Var(&c.faults.Seed, "fault-seed", 0, "testing only: seed of the fault injection (0: random, logged)")
	for _, name := range []string{"fault-drop-rate", "fault-delay", "fault-jitter", "fault-seed"} {
		_ = fl.MarkHidden(name)
	}
	fl.IntVar(&c.window, "window", 1024, "most updates the head or primary holds unacknowledged by a replica before new writes wait")
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
	if err := f.cluster.validate(); err != nil {
		return s, err
	}
	if err := f.resolvePassword(); err != nil {
		return s, err
	}
	if s.log, err = newLogger(f.logLevel, f.logFormat); err != nil {
		return s, err
	}
	return s, nil
}

// envRequirePass holds the server's password when neither --requirepass
// nor --requirepass-file gives it, so that it need not appear in argv.
const envRequirePass = "LOCKSTEP_REQUIREPASS"

// resolvePassword sets requirePass from --requirepass, else
// --requirepass-file, else $LOCKSTEP_REQUIREPASS; giving both flags is an
// error rather than a guess.
func (f *serverFlags) resolvePassword() error {
	switch {
	case f.requirePass != "" && f.requirePassFile != "":
		return errors.New("--requirepass and --requirepass-file: give one of them")
	case f.requirePassFile != "":
		pass, err := readSecret(f.requirePassFile, "")
		if err != nil {
			return fmt.Errorf("--requirepass-file: %w", err)
		}
		if pass == "" {
			return fmt.Errorf("--requirepass-file %s: the file is empty", f.requirePassFile)
		}
		f.requirePass = pass
	case f.requirePass == "":
		f.requirePass = os.Getenv(envRequirePass)
	}
	return nil
}

func runServer(ctx context.Context, f *serverFlags) error {
	set, err := f.validate()
	if err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if f.cluster.enabled() {
		return runClusterServer(ctx, f, set)
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
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", f.listen, err)
	}
	sweepCtx, stopSweep := context.WithCancel(ctx)
	defer stopSweep()
	go n.RunExpirySweeper(sweepCtx, 100*time.Millisecond, 1000)
	// A storage failure stops the process (fail-stop): serving on would
	// only refuse every request while looking alive to a supervisor.
	go func() {
		select {
		case <-n.Failed():
			stopSweep()
		case <-sweepCtx.Done():
		}
	}()
	if err := serve(sweepCtx, f, set, ln, n, admin.Checks{Health: n.Err}, nil); err != nil {
		return err
	}
	if err := n.Err(); err != nil && !errors.Is(err, node.ErrClosed) {
		return fmt.Errorf("storage failed, stopping: %w", err)
	}
	return nil
}

// runClusterServer runs a node that replicates through an etcd-coordinated
// group. An incarnation whose coordinator session ends, or whose kept
// state the group re-formed without, does not end the process: it closes
// and the node joins again as a new incarnation, keeping its data when the
// configuration still counts on it (coord.KeepData). So an etcd outage or
// partition longer than the lease costs service while it lasts, but
// neither data nor an operator's restart: when every member lost its
// lease, the group re-forms from their disks. A failed disk, or any other
// replica failure, still stops the process.
func runClusterServer(ctx context.Context, f *serverFlags, set settings) error {
	addr := f.listen
	for joined := false; ; joined = true {
		err := runIncarnation(ctx, f, set, &addr, joined)
		if ctx.Err() != nil || !errors.Is(err, errRejoin) {
			return err
		}
		set.log.Warn("joining the cluster again as a new incarnation", "reason", err)
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// runIncarnation runs one incarnation of a cluster node on addr (which it
// sets to the address bound, so the next one listens where clients and
// peers know it). After a first join, failing to reach etcd again is a
// reason to retry (errRejoin) rather than give up.
func runIncarnation(ctx context.Context, f *serverFlags, set settings, addr *string, joined bool) (err error) {
	log := set.log
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	*addr = ln.Addr().String()
	cn, err := startCluster(ctx, f, *addr, log)
	if err != nil {
		_ = ln.Close()
		if joined {
			return fmt.Errorf("%w: %w", errRejoin, err)
		}
		return err
	}
	defer func() { cn.close(context.Background(), errors.Is(err, errRejoin) && ctx.Err() == nil) }()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	lost := make(chan error, 1)
	go func() { lost <- cn.run(runCtx, f, log); cancel() }()
	err = serve(runCtx, f, set, ln, cn.rep, admin.Checks{Health: cn.rep.Err, Ready: cn.rep.Ready}, func() string {
		st := cn.rep.Status()
		return fmt.Sprintf("role=%s epoch=%d", st.Role, st.Epoch)
	})
	cancel()
	if lerr := <-lost; lerr != nil {
		return lerr
	}
	return err
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

// serve runs the client and admin endpoints until ctx ends (a signal, or
// the cluster session ending), then shuts down gracefully.
func serve(ctx context.Context, f *serverFlags, set settings, ln net.Listener, backend server.Backend, checks admin.Checks, describe func() string) error {
	log := set.log
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if c, ok := backend.(interface{ Collectors() []prometheus.Collector }); ok {
		reg.MustRegister(c.Collectors()...)
	}
	srv, err := server.New(server.Config{
		Backend: backend, RequirePass: f.requirePass, MaxClients: f.maxClients, Limits: set.limits,
		IdleTimeout: f.idleTimeout, Version: buildVersion(), Logger: log, Metrics: server.NewMetrics(reg),
	})
	if err != nil {
		_ = ln.Close()
		return err
	}
	errc := make(chan error, 2)
	var adm *admin.Server
	if f.adminAddr != "" {
		if adm, err = admin.Listen(f.adminAddr, reg, checks); err != nil {
			_ = ln.Close()
			return fmt.Errorf("--admin-addr %s: %w", f.adminAddr, err)
		}
		go func() { errc <- adm.Serve() }()
		log.Info("admin endpoint", "addr", adm.Addr().String())
	}
	go func() { errc <- srv.Serve(ln) }()
	attrs := []any{"addr", ln.Addr().String(), "storage", f.storage, "version", buildVersion()}
	if describe != nil {
		attrs = append(attrs, "cluster", describe())
	}
	log.Info("ready", attrs...)
	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case serveErr = <-errc:
		log.Error("serving stopped", "err", serveErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), f.shutdownWait)
	defer cancel()
	began := time.Now()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("clients did not finish in time", "err", err)
	}
	log.Info("clients finished", "took", time.Since(began).Round(time.Millisecond))
	if adm != nil {
		_ = adm.Shutdown(sctx)
	}
	return serveErr
}
