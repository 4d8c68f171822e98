package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep/lockstep/coord"
)

// The cluster and group names of a local cluster: the server's defaults.
const (
	upCluster = "lockstep"
	upGroup   = "default"
)

type upFlags struct {
	nodes        int
	protocol     string
	dir          string
	basePort     int
	restartAfter time.Duration
	storage      string
	leaseTTL     time.Duration
	adminBase    int
	procs        int
	cpInterval   time.Duration
	fresh        bool
	// changed reports whether a flag was given on the command line; a
	// resumed cluster keeps its own settings for those that were not.
	changed func(name string) bool
}

func newUpCmd() *cobra.Command {
	f := &upFlags{}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start a local fault-tolerant cluster: embedded etcd plus N lockstep servers",
		Long: `Start a replicated cluster on this machine with nothing else installed:
an embedded single-member etcd (the coordinator) and --nodes 'lockstep
server' child processes on 127.0.0.1, client ports --base-port, +1, ...

It prints each node's client address, then a 'ready' line once the group
(a chain, or a primary and its backups with --protocol primary-backup or
checkpoint) is formed. Any node serves any client. Kill a node and the others carry on;
with --restart-after the killed node is restarted and rejoins (behind the
tail, or as a backup). Ctrl-C stops everything.

Data persists: nodes store their data with Pebble in --dir/<node> and
acknowledge a write once it is on disk on every replica that counts
(--storage pebble, the default). Ctrl-C stops the cluster; 'up' again in the
same --dir resumes it with its data, its protocol and its number of nodes
(the group re-forms from the nodes' disks). --fresh deletes what an
earlier cluster left in --dir and starts a new one. Only one 'up' may run
in a --dir at a time. With --storage memory nothing survives a stop.
Logs are in --dir/<node>.log.`,
		Example: `  lockstep up
  lockstep up --nodes 5 --restart-after 3s
  redis-cli -p 7001 set k v; lockstep status`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.changed = cmd.Flags().Changed
			return runUp(cmd.Context(), f, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&f.nodes, "nodes", 3, "number of lockstep servers")
	fl.StringVar(&f.protocol, "protocol", "chain", "replication protocol: chain, primary-backup or checkpoint")
	fl.DurationVar(&f.cpInterval, "checkpoint-interval", 0, "checkpoint protocol: epoch length (0: the server's default, 20ms)")
	fl.StringVar(&f.dir, "dir", "lockstep-cluster", "directory for etcd data, node data and logs")
	fl.IntVar(&f.basePort, "base-port", 7001, "client port of the first node; node i listens on base-port+i-1")
	fl.DurationVar(&f.restartAfter, "restart-after", 0, "restart a node this long after it dies (0: never)")
	fl.StringVar(&f.storage, "storage", "pebble", "node storage: pebble (on disk in --dir, survives a stop) or memory (faster, lost when a node stops)")
	fl.BoolVar(&f.fresh, "fresh", false, "delete the cluster an earlier 'up' left in --dir and start a new one (default: resume it with its data)")
	fl.DurationVar(&f.leaseTTL, "lease-ttl", 2*time.Second, "coordinator lease TTL of each node")
	fl.IntVar(&f.adminBase, "admin-base-port", 0, "if set, node i serves /metrics and /debug/pprof on admin-base-port+i-1")
	fl.IntVar(&f.procs, "procs-per-node", 0, "GOMAXPROCS of each node (0: this machine's cores shared out between the nodes, at least 1; a GOMAXPROCS in the environment wins)")
	return cmd
}

func (f *upFlags) validate() error {
	switch {
	case f.nodes < 1 || f.nodes > 32:
		return fmt.Errorf("--nodes %d: want 1 to 32", f.nodes)
	case f.protocol != coord.ProtocolChain && f.protocol != coord.ProtocolPrimaryBackup && f.protocol != coord.ProtocolCheckpoint:
		return fmt.Errorf("--protocol %q: want %s, %s or %s", f.protocol, coord.ProtocolChain, coord.ProtocolPrimaryBackup, coord.ProtocolCheckpoint)
	case f.cpInterval < 0:
		return fmt.Errorf("--checkpoint-interval %v: must not be negative", f.cpInterval)
	case f.basePort < 1 || f.basePort+f.nodes > 65535:
		return fmt.Errorf("--base-port %d: out of range", f.basePort)
	case f.storage != "memory" && f.storage != "pebble":
		return fmt.Errorf("--storage %q: want memory or pebble", f.storage)
	case f.restartAfter < 0:
		return fmt.Errorf("--restart-after %v: must not be negative", f.restartAfter)
	case f.procs < 0:
		return fmt.Errorf("--procs-per-node %d: must not be negative", f.procs)
	}
	return nil
}

// checkPorts makes sure every node's client and admin port is free before
// anything starts: a node that cannot listen exits at once, and the cluster
// would wait for it forever without saying why.
func (f *upFlags) checkPorts() error {
	for i := 1; i <= f.nodes; i++ {
		if err := portFree("--base-port", f.basePort, "client", i); err != nil {
			return err
		}
		if f.adminBase > 0 {
			if err := portFree("--admin-base-port", f.adminBase, "admin", i); err != nil {
				return err
			}
		}
	}
	return nil
}

// portFree checks node i's port base+i-1, given by flag, by listening on it.
func portFree(flag string, base int, what string, i int) error {
	addr := "127.0.0.1:" + strconv.Itoa(base+i-1)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s %d: the %s port of %s, %s, is taken; choose another %s: %w", flag, base, what, nodeName(i), addr, flag, err)
	}
	return l.Close()
}

func runUp(ctx context.Context, f *upFlags, out io.Writer) error {
	if err := f.validate(); err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if err := f.checkPorts(); err != nil {
		return err
	}
	dir, err := openUpDir(f.dir, f.fresh)
	if err != nil {
		return err
	}
	defer dir.close()
	checked := f.nodes
	etcdCfg, err := f.resume(dir, out)
	if err != nil {
		return err
	}
	if f.nodes > checked {
		if err := f.checkPorts(); err != nil { // the resumed cluster has more nodes
			return err
		}
	}
	etcd, err := coord.StartEmbedded(ctx, etcdCfg)
	if err != nil {
		return fmt.Errorf("start embedded etcd: %w", err)
	}
	defer etcd.Close()
	info := upInfo{EtcdEndpoints: etcd.Endpoints(), EtcdPeerURL: etcd.PeerURL(), Cluster: upCluster, Group: upGroup,
		Nodes: f.nodes, Protocol: f.protocol, Storage: f.storage}
	if err := writeJSON(filepath.Join(f.dir, "cluster.json"), info); err != nil {
		return err
	}
	fmt.Fprintf(out, "etcd      %s\n", etcd.Endpoints()[0])
	cli, err := coord.Dial(etcd.Endpoints(), log)
	if err != nil {
		return err
	}
	defer cli.Close()
	sup := &supervisor{f: f, self: self, etcd: etcd.Endpoints()[0], cli: cli, out: out, log: log}
	for i := 1; i <= f.nodes; i++ {
		if err := sup.start(i); err != nil {
			sup.stopAll()
			return err
		}
	}
	go sup.watchReady(ctx)
	<-ctx.Done()
	fmt.Fprintln(out, "stopping")
	sup.stopAll()
	return nil
}

// supervisor runs the node processes and restarts them if asked to.
type supervisor struct {
	f    *upFlags
	self string
	etcd string
	cli  *clientv3.Client // fences nodes that exit
	out  io.Writer
	log  *slog.Logger

	mu       sync.Mutex
	procs    map[int]*exec.Cmd
	stopping bool
}

func nodeName(i int) string { return "n" + strconv.Itoa(i) }

// childEnv gives each node its share of the machine's cores. The nodes of
// a local cluster share one machine; with Go's default every node would
// run a thread per core, and the threads would spin and preempt each other
// (on 2 cores, a 3-node chain does 13% more writes with 1 each).
func childEnv(f *upFlags) []string {
	env := os.Environ()
	if os.Getenv("GOMAXPROCS") != "" {
		return env
	}
	n := f.procs
	if n <= 0 {
		n = max(1, runtime.NumCPU()/f.nodes)
	}
	return append(env, "GOMAXPROCS="+strconv.Itoa(n))
}

func (s *supervisor) start(i int) error {
	name := nodeName(i)
	addr := "127.0.0.1:" + strconv.Itoa(s.f.basePort+i-1)
	logf, err := os.OpenFile(filepath.Join(s.f.dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.self, "server", "--name", name, "--listen", addr,
		"--etcd-endpoints", s.etcd, "--data-dir", filepath.Join(s.f.dir, name),
		"--storage", s.f.storage, "--bootstrap-expect", strconv.Itoa(s.f.nodes),
		"--lease-ttl", s.f.leaseTTL.String(), "--protocol", s.f.protocol)
	if s.f.adminBase > 0 {
		cmd.Args = append(cmd.Args, "--admin-addr", "127.0.0.1:"+strconv.Itoa(s.f.adminBase+i-1))
	}
	if s.f.cpInterval > 0 {
		cmd.Args = append(cmd.Args, "--checkpoint-interval", s.f.cpInterval.String())
	}
	cmd.Env = childEnv(s.f)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	s.mu.Lock()
	if s.procs == nil {
		s.procs = map[int]*exec.Cmd{}
	}
	s.procs[i] = cmd
	s.mu.Unlock()
	fmt.Fprintf(s.out, "%-9s %s pid %d (log %s)\n", name, addr, cmd.Process.Pid, logf.Name())
	go s.reap(i, cmd, logf)
	return nil
}

// reap waits for a node to exit, fences it, reports it, and restarts it
// after --restart-after unless everything is stopping.
func (s *supervisor) reap(i int, cmd *exec.Cmd, logf *os.File) {
	err := cmd.Wait()
	logf.Close()
	s.mu.Lock()
	stopping := s.stopping
	s.mu.Unlock()
	if stopping {
		return
	}
	why := ""
	if cmd.ProcessState != nil && cmd.ProcessState.ExitCode() > 0 {
		why = lastWords(logf.Name()) // it gave up on its own: its log says why
	}
	fmt.Fprintf(s.out, "%s exited: %v%s%s\n", nodeName(i), exitText(err), s.fence(i, cmd.Process.Pid), why)
	if s.f.restartAfter <= 0 {
		return
	}
	time.Sleep(s.f.restartAfter)
	s.mu.Lock()
	stopping = s.stopping
	s.mu.Unlock()
	if stopping {
		return
	}
	fmt.Fprintf(s.out, "restarting %s\n", nodeName(i))
	if err := s.start(i); err != nil {
		fmt.Fprintf(s.out, "restart %s failed: %v\n", nodeName(i), err)
	}
}

// fence tells the coordinator at once that node i's process pid is dead,
// so its group reconfigures now rather than when the lease expires: the
// wait that just returned is proof of death, which lease expiry only
// infers. The node's own watchdog usually fences it first; this covers a
// watchdog that died with it. It returns a note for the exit line.
func (s *supervisor) fence(i, pid int) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := coord.Fence(ctx, s.cli, upCluster, nodeName(i), pid); err != nil {
		s.log.Warn("fencing a dead node failed; its lease will expire instead", "node", nodeName(i), "err", err)
		return ""
	}
	return " (fenced: the group reconfigures now)" // by us or by its watchdog
}

// lastWords returns the last line of a node's log, for the exit line of a
// node that exited with a failure status: a node that gives up (at
// start-up, say) says why there, and the reader of `up`'s output should
// not have to go and look. A node killed by a signal has nothing to add.
func lastWords(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	// Only the end is read: the log keeps every run of the node.
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	b := make([]byte, min(st.Size(), 4096))
	if _, err := f.ReadAt(b, st.Size()-int64(len(b))); err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	b = bytes.TrimRight(b, "\n")
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	if len(b) == 0 {
		return ""
	}
	if len(b) > 300 {
		b = append(b[:300:300], "..."...)
	}
	return "; its log ends: " + string(b)
}

func exitText(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ProcessState.String()
	}
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// watchReady prints "ready" once the configuration has every node as a
// member and every member reports serving in that epoch, so a `lockstep
// status` right after it shows the group as it is.
func (s *supervisor) watchReady(ctx context.Context) {
	for cfg := range coord.WatchConfig(ctx, s.cli, upCluster, upGroup) {
		if len(cfg.Members) == s.f.nodes && s.waitServing(ctx, cfg) {
			fmt.Fprintf(s.out, "ready: %d-node %s group, epoch %d; try: redis-cli -p %d set k v; lockstep status --dir %s\n",
				s.f.nodes, cfg.Protocol, cfg.Epoch, s.f.basePort, s.f.dir)
			return
		}
	}
}

// waitServing polls the node records until every member of cfg reports
// serving in cfg's epoch. It gives up (false) after a few seconds, and the
// caller waits for the next configuration.
func (s *supervisor) waitServing(ctx context.Context, cfg coord.Config) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if nodes, err := coord.ListNodes(ctx, s.cli, upCluster); err == nil && allServing(cfg, nodes) {
			return true
		}
		if cur, err := coord.GetConfig(ctx, s.cli, upCluster, upGroup); err == nil && cur.Epoch > cfg.Epoch {
			return false // superseded (a resumed cluster's old configuration): the watch has the next
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

func allServing(cfg coord.Config, nodes []coord.NodeInfo) bool {
	serving := 0
	for _, n := range nodes {
		if cfg.Index(n.Member()) >= 0 && n.Epoch == cfg.Epoch && n.State == coord.StateServing {
			serving++
		}
	}
	return serving == len(cfg.Members)
}

// stopAll asks every node to stop (SIGTERM), then kills what is left.
func (s *supervisor) stopAll() {
	s.mu.Lock()
	s.stopping = true
	procs := make([]*exec.Cmd, 0, len(s.procs))
	for _, p := range s.procs {
		procs = append(procs, p)
	}
	s.mu.Unlock()
	for _, p := range procs {
		_ = p.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range procs {
		for time.Now().Before(deadline) && p.Process.Signal(syscall.Signal(0)) == nil {
			time.Sleep(50 * time.Millisecond)
		}
		_ = p.Process.Kill()
	}
}

// resume adopts the settings of the cluster an earlier 'up' left in dir,
// if any, and returns where to start etcd: on its directory, at its
// earlier addresses (etcd records its peer URL). A setting given on the
// command line that contradicts the cluster's is refused rather than
// silently ignored. A cluster that kept its data in memory has nothing
// left to resume, so a new one starts.
func (f *upFlags) resume(dir *upDir, out io.Writer) (coord.EmbeddedConfig, error) {
	cfg := coord.EmbeddedConfig{Dir: filepath.Join(f.dir, "etcd")}
	prev := dir.prev
	if prev == nil {
		return cfg, nil
	}
	if prev.Storage != "pebble" {
		fmt.Fprintf(out, "the cluster in %s kept its data in memory, which did not survive; starting a new one\n", f.dir)
		return cfg, dir.inspect(true)
	}
	for _, s := range []struct {
		flag      string
		mine, was string
		set       func()
	}{
		{"protocol", f.protocol, prev.Protocol, func() { f.protocol = prev.Protocol }},
		{"nodes", strconv.Itoa(f.nodes), strconv.Itoa(prev.Nodes), func() { f.nodes = prev.Nodes }},
		{"storage", f.storage, prev.Storage, func() { f.storage = prev.Storage }},
	} {
		if f.changed != nil && f.changed(s.flag) && s.mine != s.was {
			return cfg, fmt.Errorf("--%s %s: the cluster in %s has %s %s; leave the flag out to resume it, or add --fresh to delete it and start a new one",
				s.flag, s.mine, f.dir, s.flag, s.was)
		}
		s.set()
	}
	if len(prev.EtcdEndpoints) > 0 {
		cfg.ClientURL = prev.EtcdEndpoints[0]
	}
	cfg.PeerURL = prev.EtcdPeerURL
	fmt.Fprintf(out, "resuming the %d-node %s cluster in %s with its data (--fresh starts a new one)\n", f.nodes, f.protocol, f.dir)
	return cfg, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
