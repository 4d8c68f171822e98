package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/dedup"
	"github.com/lockstep/lockstep/kv"
	"github.com/lockstep/lockstep/replica"
	"github.com/lockstep/lockstep/server"
	"github.com/lockstep/lockstep/storage"
	"github.com/lockstep/lockstep/transport"
)

// clusterFlags are the settings of a node that joins a replication group
// through etcd.
type clusterFlags struct {
	etcd            string
	name            string
	peerAddr        string
	cluster         string
	group           string
	protocol        string
	leaseTTL        time.Duration
	bootstrapExpect int
	window          int
	cpInterval      time.Duration
	cpBytes         int
	logRetention    string
	retainBytes     int
	// advertiseAddr and advertisePeerAddr are what the node publishes for
	// its client and peer ports, for listeners that peers and clients
	// cannot dial as bound (a wildcard, a container's address).
	advertiseAddr     string
	advertisePeerAddr string
	faults            transport.Faults // chaos testing: an unreliable replication network
	fenceOnExit       bool
}

func (c *clusterFlags) enabled() bool { return c.etcd != "" }

// faultsOrNil returns the fault settings if any fault is asked for.
func (c *clusterFlags) faultsOrNil() *transport.Faults {
	if c.faults == (transport.Faults{Seed: c.faults.Seed}) {
		return nil
	}
	f := c.faults
	return &f
}

func (c *clusterFlags) validate() error {
	if !c.enabled() {
		return nil
	}
	if c.name == "" {
		return errors.New("--name is required with --etcd-endpoints")
	}
	if strings.ContainsAny(c.name, "/# \t\n") {
		return fmt.Errorf("--name %q: must not contain '/', '#' or spaces", c.name)
	}
	if _, _, err := net.SplitHostPort(c.peerAddr); err != nil {
		return fmt.Errorf("--peer-addr %q: %w", c.peerAddr, err)
	}
	switch c.protocol {
	case "", replica.ProtocolChain, replica.ProtocolPrimaryBackup, replica.ProtocolCheckpoint:
	default:
		return fmt.Errorf("--protocol %q: want %s, %s or %s", c.protocol, replica.ProtocolChain, replica.ProtocolPrimaryBackup, replica.ProtocolCheckpoint)
	}
	if c.cpInterval < time.Millisecond || c.cpInterval > 10*time.Second {
		return fmt.Errorf("--checkpoint-interval %v: want 1ms to 10s", c.cpInterval)
	}
	if c.cpBytes < 1024 {
		return fmt.Errorf("--checkpoint-bytes %d: want at least 1024", c.cpBytes)
	}
	n, err := parseBytes(c.logRetention)
	if err != nil || n > 1<<40 {
		return fmt.Errorf("--log-retention %q: want a size such as 64mb (0 keeps no history)", c.logRetention)
	}
	c.retainBytes = int(n)
	for flag, v := range map[string]string{"--advertise-addr": c.advertiseAddr, "--advertise-peer-addr": c.advertisePeerAddr} {
		if _, err := advertised("127.0.0.1:1", v); err != nil {
			return fmt.Errorf("%s: %w", flag, err)
		}
	}
	if c.leaseTTL < time.Second {
		return fmt.Errorf("--lease-ttl %v: must be at least 1s (etcd leases are whole seconds)", c.leaseTTL)
	}
	if c.bootstrapExpect < 1 {
		return fmt.Errorf("--bootstrap-expect %d: must be at least 1", c.bootstrapExpect)
	}
	if c.window < 1 {
		return fmt.Errorf("--window %d: must be at least 1", c.window)
	}
	if r := c.faults.DropRate; r < 0 || r >= 1 {
		return fmt.Errorf("--fault-drop-rate %v: want at least 0 and below 1", r)
	}
	if c.faults.Delay < 0 || c.faults.Jitter < 0 {
		return fmt.Errorf("--fault-delay %v, --fault-jitter %v: must not be negative", c.faults.Delay, c.faults.Jitter)
	}
	return nil
}

// clusterNode is everything a replicated node runs besides the front end.
type clusterNode struct {
	cli     *clientv3.Client
	session *coord.Session
	rep     *replica.Replica
	tr      *transport.Transport
	store   storage.Store
	peers   sync.Map // name -> peer address
	log     *slog.Logger
	// dataDir is the Pebble directory ("" for memory), whose replaced
	// copy (setAside) goes once this node is a complete member.
	dataDir string
	// root is --data-dir for durable storage ("" for memory), where a
	// clean stop is recorded.
	root string
	// watchdog is the write end of the watchdog's pipe: it must stay open
	// (and referenced) while the process serves; see watchdog.go.
	watchdog *os.File
}

// startCluster connects to etcd, prepares storage and starts the replica,
// its transport and its coordinator session. clientAddr is the bound
// client port, published so other replicas can forward to this one.
func startCluster(ctx context.Context, f *serverFlags, clientAddr string, log *slog.Logger) (*clusterNode, error) {
	cf := &f.cluster
	cli, err := coord.Dial(strings.Split(cf.etcd, ","), log.With("component", "etcd-client"))
	if err != nil {
		return nil, fmt.Errorf("--etcd-endpoints %s: %w", cf.etcd, err)
	}
	n := &clusterNode{cli: cli, log: log}
	if err := n.start(ctx, f, clientAddr, log); err != nil {
		n.close(context.Background(), false)
		return nil, err
	}
	return n, nil
}

func (n *clusterNode) start(ctx context.Context, f *serverFlags, clientAddr string, log *slog.Logger) error {
	cf := &f.cluster
	octx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	id, err := coord.EnsureClusterID(octx, n.cli, cf.cluster)
	if err != nil {
		return fmt.Errorf("cannot reach etcd at %s: %w", cf.etcd, err)
	}
	proto, cur, err := groupProtocol(octx, n.cli, cf)
	if err != nil {
		return err
	}
	var kept keptAs
	if n.store, kept, err = openReplicaStore(f, id, cur, log); err != nil {
		return err
	}
	if f.storage != "memory" {
		n.dataDir = filepath.Join(f.dataDir, "pebble")
		n.root = f.dataDir
	}
	inc := coord.NewIncarnation()
	machine, err := dedup.Wrap(kv.New(n.store, kv.Options{}), 0)
	if err != nil {
		return err
	}
	n.rep, err = replica.New(replica.Options{
		Name: cf.name, Incarnation: inc, Cluster: cf.cluster, Group: cf.group, Machine: machine, Store: n.store,
		Protocol: proto, Core: replica.CoreOptions{
			Window: cf.window, CheckpointInterval: cf.cpInterval, CheckpointBytes: cf.cpBytes,
			RetainBytes: cf.retainBytes,
		},
		Logger:          log.With("component", "replica"),
		SyncBeforeSend:  n.store.Durable() && f.fsync == "always",
		ForwardPassword: f.requirePass,
		Recovered:       kept == keptMember || kept == keptCleanMember,
		Committed:       kept == keptClean || kept == keptCleanMember,
	})
	if err != nil {
		return err
	}
	n.tr, err = transport.Listen(transport.Config{
		Name: cf.name, ClusterID: id, Listen: cf.peerAddr,
		Resolve: n.resolve, Handler: n.rep.Deliver, BurstDone: n.rep.BurstDone, Snapshot: n.rep.ServeSnapshot,
		Faults: cf.faultsOrNil(), Logger: log.With("component", "transport"),
	})
	if err != nil {
		return fmt.Errorf("--peer-addr %s: %w", cf.peerAddr, err)
	}
	clientPub, err := advertised(clientAddr, cf.advertiseAddr)
	if err != nil {
		return fmt.Errorf("--advertise-addr: %w", err)
	}
	peerPub, err := advertised(n.tr.Addr(), cf.advertisePeerAddr)
	if err != nil {
		return fmt.Errorf("--advertise-peer-addr: %w", err)
	}
	host, _ := os.Hostname() // empty if unknown: fence then refuses, as it must
	// Registration may wait a few lease TTLs for an earlier process of
	// this name to be forgotten, so it gets more time than the setup.
	rctx, rcancel := context.WithTimeout(ctx, 15*time.Second+6*max(cf.leaseTTL, coord.DefaultTTL))
	defer rcancel()
	n.session, err = coord.NewSession(rctx, n.cli, coord.SessionConfig{
		Cluster: cf.cluster, Group: cf.group, TTL: cf.leaseTTL, Logger: log.With("component", "session"),
		Node: coord.NodeInfo{
			Name: cf.name, Incarnation: inc, ClientAddr: clientPub, PeerAddr: peerPub,
			AdminAddr: f.adminAddr, Pid: os.Getpid(), Host: host, State: coord.StateStarting,
			DataID: dataID(n.store), Durable: durableSeq(n.store, kept),
		},
	})
	if err != nil {
		return fmt.Errorf("register with etcd: %w", err)
	}
	n.rep.Attach(n.tr, n.tr, n.session)
	if cf.fenceOnExit {
		if n.watchdog, err = startWatchdog(cf); err != nil {
			log.Warn("no watchdog: if this process dies, its group waits for its lease to expire", "err", err)
		}
	}
	log.Info("joined cluster", "cluster", cf.cluster, "cluster_id", id, "name", cf.name, "incarnation", inc,
		"protocol", proto, "client_addr", clientPub, "peer_addr", peerPub)
	return nil
}

// groupProtocol is the protocol this node runs: the group's if it exists
// (a --protocol naming another is refused rather than silently ignored),
// else --protocol, else chain. It also returns the group's configuration
// (nil if there is none yet).
func groupProtocol(ctx context.Context, cli *clientv3.Client, cf *clusterFlags) (string, *coord.Config, error) {
	cfg, err := coord.GetConfig(ctx, cli, cf.cluster, cf.group)
	switch {
	case errors.Is(err, coord.ErrNoConfig):
		if cf.protocol == "" {
			return replica.ProtocolChain, nil, nil
		}
		return cf.protocol, nil, nil
	case err != nil:
		return "", nil, fmt.Errorf("read group %s: %w", cf.group, err)
	case cf.protocol != "" && cf.protocol != cfg.Protocol:
		return "", nil, fmt.Errorf("--protocol %s: %w: group %s runs %s (omit --protocol to follow the group)",
			cf.protocol, replica.ErrWrongProtocol, cf.group, cfg.Protocol)
	}
	return cfg.Protocol, &cfg, nil
}

// openReplicaStore opens the node's storage. A data directory that holds a
// member's state in the group's configuration cur is kept (recovered): the
// group may be down after a total outage and re-form from it (see
// coord.KeepData and coord.Plan). So is a state the node left all
// committed at a clean stop (coord.KeepClean): it rejoins on it. Any other
// earlier state is discarded,
// after checking that the directory belongs to this cluster: the process
// rejoins as a new member and receives a snapshot.
func openReplicaStore(f *serverFlags, clusterID string, cur *coord.Config, log *slog.Logger) (storage.Store, keptAs, error) {
	if f.storage == "memory" {
		return storage.NewMemory(), keptNothing, nil
	}
	dir := filepath.Join(f.dataDir, "pebble")
	if err := os.MkdirAll(f.dataDir, 0o755); err != nil {
		return nil, keptNothing, fmt.Errorf("--data-dir: %w", err)
	}
	open := func() (*storage.Pebble, error) {
		st, err := storage.OpenPebble(dir, storage.PebbleOptions{ClusterID: clusterID, Logger: log.With("component", "pebble")})
		if err != nil {
			return nil, fmt.Errorf("open storage in %s: %w", dir, err)
		}
		return st, nil
	}
	if _, err := os.Stat(dir); err != nil {
		st, err := open()
		return st, keptNothing, err
	}
	old, err := storage.OpenPebble(dir, storage.PebbleOptions{}) // look before recording the cluster id
	if err != nil {
		return nil, keptNothing, fmt.Errorf("open storage in %s: %w", dir, err)
	}
	owner, seq, id := old.ClusterID(), old.AppliedSeq(), old.DataID()
	_ = old.Close()
	clean, cleanOK := takeCleanStop(f.dataDir, log)
	switch {
	case owner != "" && owner != clusterID:
		return nil, keptNothing, fmt.Errorf("open storage in %s: %w: directory has %q, this cluster is %q", dir, storage.ErrWrongCluster, owner, clusterID)
	case owner == "" && seq > 0:
		return nil, keptNothing, fmt.Errorf("--data-dir %s holds a standalone node's data (%d updates); a cluster replica would discard it, so move it away or choose another --data-dir", f.dataDir, seq)
	case seq > 0 && coord.KeepData(cur, f.cluster.name, id):
		log.Info("keeping local state: this directory holds a member's state, which the group may need to re-form",
			"dir", dir, "data_id", id, "applied", seq, "epoch", cur.Epoch)
		if err := dropReplaced(dir, log); err != nil {
			return nil, keptNothing, err
		}
		st, err := open()
		if cleanOK && coord.KeepClean(cur, clean, id, seq) {
			// Stopped cleanly, and the group has not removed the old
			// process yet: a member's state that is also all committed.
			return st, keptCleanMember, err
		}
		return st, keptMember, err
	case cleanOK && coord.KeepClean(cur, clean, id, seq):
		log.Info("keeping local state: it was all committed when this node stopped cleanly; it rejoins at that seq and catches up from the group's retained log",
			"dir", dir, "data_id", id, "applied", seq)
		st, err := open()
		return st, keptClean, err
	case seq > 0:
		if err := setAside(dir, seq, log); err != nil {
			return nil, keptNothing, err
		}
	}
	st, err := open()
	return st, keptNothing, err
}

// keptAs says what openReplicaStore kept of an earlier run's state.
type keptAs int

const (
	keptNothing keptAs = iota // a fresh store
	keptMember                // a member's state, which the group may re-form from (Recovered)
	keptClean                 // a state left all committed at a clean stop (Committed)
	// keptCleanMember is both: a clean stop's state that the configuration
	// still names as a member's (the group has not removed the stopped
	// process yet). The group may re-form from it, and if it lives on and
	// makes the process a joiner, the process rejoins on it.
	keptCleanMember
)

// replacedDir is where setAside keeps a data directory the group no longer
// counts on until a complete copy has replaced it.
func replacedDir(dir string) string { return dir + ".replaced" }

// setAside makes room for a fresh store in dir, whose state (seq) the group
// no longer counts on, without deleting data before a complete copy has
// been installed in its place: dir moves to replacedDir, which is deleted
// once this node is a complete member again (dropReplaced). If a replaced
// directory is there already, this node never became a member on dir
// since, so dir is the incomplete one and goes.
func setAside(dir string, seq uint64, log *slog.Logger) error {
	old := replacedDir(dir)
	if _, err := os.Stat(old); err == nil {
		log.Info("discarding an incomplete copy; the earlier data stays aside until a complete one is installed",
			"dir", dir, "applied", seq, "kept", old)
		return os.RemoveAll(dir)
	}
	log.Info("setting local state from an earlier run aside (the group does not count on it); a snapshot will rebuild it, and it is deleted once this node is a complete member",
		"dir", dir, "applied", seq, "aside", old)
	return os.Rename(dir, old)
}

// dropReplaced deletes the directory setAside kept, if any: dir holds a
// complete copy now.
func dropReplaced(dir string, log *slog.Logger) error {
	old := replacedDir(dir)
	if _, err := os.Stat(old); err != nil {
		return nil
	}
	log.Info("deleting the data set aside at an earlier start: a complete copy replaced it", "dir", old)
	return os.RemoveAll(old)
}

// dataID is the store's data directory id, "" for memory.
func dataID(st storage.Store) string {
	if p, ok := st.(*storage.Pebble); ok {
		return p.DataID()
	}
	return ""
}

// durableSeq is what a kept store holds; 0 if it started empty.
func durableSeq(st storage.Store, kept keptAs) uint64 {
	if kept == keptNothing {
		return 0
	}
	return st.AppliedSeq()
}

func (n *clusterNode) resolve(name string) (string, bool) {
	v, ok := n.peers.Load(name)
	if !ok {
		return "", false
	}
	return v.(string), true
}

// run starts the background loops; it returns when the session is lost
// or ctx ends.
func (n *clusterNode) run(ctx context.Context, f *serverFlags, log *slog.Logger) error {
	cf := &f.cluster
	go n.rep.Run(ctx)
	go func() {
		for cfg := range coord.WatchConfig(ctx, n.cli, cf.cluster, cf.group) {
			n.rep.SetConfig(cfg)
		}
	}()
	go n.pollNodes(ctx, cf.cluster, log)
	go n.publishStatus(ctx, log)
	go n.rep.RunExpirySweeper(ctx, 100*time.Millisecond, 1000)
	go func() {
		opts := coord.PlanOptions{Protocol: n.rep.Protocol(), BootstrapExpect: cf.bootstrapExpect}
		if err := coord.RunReconfigurator(ctx, n.cli, n.session, opts); err != nil && ctx.Err() == nil {
			log.Error("reconfigurator stopped", "err", err)
		}
	}()
	select {
	case <-ctx.Done():
		return nil
	case <-n.session.Done():
		return fmt.Errorf("%w: lost the coordinator lease (%w); this incarnation stops serving", errRejoin, n.session.Err())
	case <-n.rep.Failed():
		if errors.Is(n.rep.Err(), replica.ErrStaleState) {
			return fmt.Errorf("%w: %w", errRejoin, n.rep.Err())
		}
		return fmt.Errorf("replica failed (%w); leaving the cluster so it reconfigures without this node", n.rep.Err())
	}
}

// errRejoin ends one incarnation of a cluster node that should join again
// as a new one in the same process, rather than exit: its coordinator
// session ended (the lease expired while etcd was out of reach, or the
// registration is gone), or the group re-formed without the state it kept.
var errRejoin = errors.New("rejoining the cluster")

// pollNodes keeps peer addresses and client routes current.
func (n *clusterNode) pollNodes(ctx context.Context, cluster string, log *slog.Logger) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		nodes, err := coord.ListNodes(lctx, n.cli, cluster)
		cancel()
		if err == nil {
			for _, nd := range nodes {
				n.peers.Store(nd.Name, nd.PeerAddr)
			}
			n.rep.SetNodes(nodes)
		} else if ctx.Err() == nil {
			log.Debug("list nodes", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// publishStatus reports role, epoch and progress to etcd, which is how the
// reconfigurator learns that a joiner has caught up and how `lockstep
// status` shows the cluster. A change of state, role or epoch is published
// at once; progress alone at most once a second, since every write to a
// node record wakes the reconfigurator. A publication refused because the
// registration is no longer this lease's (ErrLeaseLost) has ended the
// session, so the node stops serving and run returns; publishing stops.
func (n *clusterNode) publishStatus(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	var last coord.NodeInfo
	var lastAt time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st := n.rep.Status()
		if st.Complete && n.dataDir != "" {
			if err := dropReplaced(n.dataDir, log); err != nil {
				log.Warn("could not delete data set aside", "err", err)
			}
			n.dataDir = "" // once: the copy is complete
		}
		info := n.session.Info()
		info.State, info.Role, info.Epoch, info.Applied = st.State, st.Role, st.Epoch, st.Applied
		info.Complete, info.Lag, info.Commit = st.Complete, st.Lag, st.Commit
		if !coord.PublishDue(last, info, time.Since(lastAt)) {
			continue
		}
		uctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := n.session.UpdateInfo(uctx, info)
		cancel()
		switch {
		case err == nil:
			last, lastAt = info, time.Now()
		case errors.Is(err, coord.ErrLeaseLost):
			log.Error("registration lost; no longer serving", "err", err)
			return
		}
	}
}

// close leaves the cluster: the replica retires, recording a clean stop
// if its state is all committed, and the lease is revoked so peers
// reconfigure at once instead of waiting for it to expire. A process that goes on to
// join again (rejoining) stands its watchdog down whatever happened to the
// lease: the watchdog fences on end of file, which must mean death.
func (n *clusterNode) close(ctx context.Context, rejoining bool) {
	n.retire(n.root)
	left := false
	if n.session != nil {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		left = n.session.Close(cctx) == nil
		cancel()
		n.log.Info("left the cluster", "lease_revoked", left)
	}
	if n.watchdog != nil {
		if left || rejoining {
			watchdogStandDown(n.watchdog) // the lease is gone already, or this process lives on
		}
		_ = n.watchdog.Close()
	}
	if n.tr != nil {
		_ = n.tr.Close()
	}
	if n.store != nil {
		_ = n.store.Close()
	}
	if n.cli != nil {
		_ = n.cli.Close()
	}
}

var _ server.Backend = (*replica.Replica)(nil)
