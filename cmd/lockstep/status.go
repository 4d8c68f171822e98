package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep/lockstep/coord"
)

type statusFlags struct {
	groupTarget
	json bool
}

func newStatusCmd() *cobra.Command {
	f := &statusFlags{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the nodes of a cluster: role, epoch, applied sequence, lag, address",
		Long: `Show every node of a replication group as the coordinator sees it.

Point it at a cluster started by 'lockstep up' with --dir, or at any
cluster's etcd with --etcd-endpoints. Roles: head, middle, tail (chain
order; a one-node chain's node is the head) or primary, backup (for
--protocol primary-backup and checkpoint), joining (catching up, or waiting
to), down (a configured member whose process is gone). lag is how many
updates a node is behind the most advanced one. Nodes publish role and
epoch at once, and applied, commit and lag at most once a second, so the
numbers may be up to a second old. commit, at the head or
primary, is the last sequence number every replica acknowledged (under
checkpoint replication, the last checkpoint every backup installed).
complete (in --json) marks members that hold every acknowledged write:
only those may become primary.`,
		Example: `  lockstep status --dir lockstep-cluster
  lockstep status --etcd-endpoints http://10.0.0.5:2379 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStatus(cmd.Context(), f, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	f.groupTarget.addFlags(cmd)
	fl.BoolVar(&f.json, "json", false, `print JSON: {"nodes":[{"name","pid","client_addr","role","epoch",...}]}`)
	return cmd
}

// NodeStatus is one row of `lockstep status`.
type NodeStatus struct {
	Name       string `json:"name"`
	Pid        int    `json:"pid"`
	ClientAddr string `json:"client_addr"`
	PeerAddr   string `json:"peer_addr,omitempty"`
	Role       string `json:"role"`
	State      string `json:"state"`
	Epoch      uint64 `json:"epoch"`
	Applied    uint64 `json:"applied"`
	Lag        uint64 `json:"lag"`
	Commit     uint64 `json:"commit"`
	Complete   bool   `json:"complete"`
}

// ClusterStatus is the whole answer of `lockstep status --json`.
type ClusterStatus struct {
	Cluster  string       `json:"cluster"`
	Group    string       `json:"group"`
	Protocol string       `json:"protocol"`
	Epoch    uint64       `json:"epoch"`
	Nodes    []NodeStatus `json:"nodes"`
	// Down, when the group cannot serve, says why and whom it waits for.
	Down string `json:"down,omitempty"`
	// Paused, when an operator paused the group's automation, says since
	// when and why (see lockstep pause).
	Paused string `json:"paused,omitempty"`
}

func runStatus(ctx context.Context, f *statusFlags, out io.Writer) error {
	ctx, cancel := adminContext(ctx)
	defer cancel()
	cli, where, err := f.dial()
	if err != nil {
		return err
	}
	defer cli.Close()
	st, err := clusterStatus(ctx, cli, f.cluster, f.group)
	if err != nil {
		return fmt.Errorf("read cluster state from %s: %w", where, err)
	}
	if f.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	return printStatus(out, st)
}

func printStatus(out io.Writer, st ClusterStatus) error {
	fmt.Fprintf(out, "cluster %s, group %s, protocol %s, epoch %d\n", st.Cluster, st.Group, st.Protocol, st.Epoch)
	if st.Down != "" {
		fmt.Fprintf(out, "%s\n", st.Down)
	}
	if st.Paused != "" {
		fmt.Fprintf(out, "automation %s: no failover, removal or join until 'lockstep resume'\n", st.Paused)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tSTATE\tEPOCH\tAPPLIED\tCOMMIT\tLAG\tCLIENT ADDR\tPID")
	for _, n := range st.Nodes {
		commit := "-"
		if n.Role == "head" || n.Role == "primary" {
			commit = strconv.FormatUint(n.Commit, 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%d\t%s\t%d\n", n.Name, n.Role, n.State, n.Epoch, n.Applied, commit, n.Lag, n.ClientAddr, n.Pid)
	}
	return tw.Flush()
}

// clusterStatus joins the configuration (who should be where) with the
// live node records (who is there and how far along).
func clusterStatus(ctx context.Context, cli *clientv3.Client, cluster, group string) (ClusterStatus, error) {
	st := ClusterStatus{Cluster: cluster, Group: group}
	cfg, err := coord.GetConfig(ctx, cli, cluster, group)
	if err != nil && !errors.Is(err, coord.ErrNoConfig) {
		return st, err
	}
	nodes, err := coord.ListNodes(ctx, cli, cluster)
	if err != nil {
		return st, err
	}
	st.Protocol, st.Epoch = cfg.Protocol, cfg.Epoch
	if err == nil {
		// What the reconfiguration leader would do now: while the group is
		// down, its reason names what it waits for.
		if _, changed, why := coord.Plan(&cfg, nodes, coord.PlanOptions{}); !changed && strings.HasPrefix(why, "group down") {
			st.Down = why
		}
	}
	if p, err := coord.GetPause(ctx, cli, cluster, group); err != nil {
		return st, err
	} else if p != nil {
		st.Paused = "paused since " + p.Since.Local().Format(time.DateTime)
		if p.Reason != "" {
			st.Paused += " (" + p.Reason + ")"
		}
	}
	live := map[string]coord.NodeInfo{}
	var maxApplied uint64
	for _, n := range nodes {
		live[n.Name] = n
		maxApplied = max(maxApplied, n.Applied)
	}
	row := func(name, inc, role string) NodeStatus {
		n, ok := live[name]
		if !ok || (inc != "" && n.Incarnation != inc) {
			return NodeStatus{Name: name, Role: "down", State: "down"}
		}
		delete(live, name)
		return NodeStatus{Name: name, Pid: n.Pid, ClientAddr: n.ClientAddr, PeerAddr: n.PeerAddr, Role: role,
			State: n.State, Epoch: n.Epoch, Applied: n.Applied, Lag: maxApplied - n.Applied, Commit: n.Commit, Complete: n.Complete}
	}
	for i, m := range cfg.Members {
		st.Nodes = append(st.Nodes, row(m.Name, m.Incarnation, position(cfg.Protocol, i, len(cfg.Members))))
	}
	if j := cfg.Joining; j != nil {
		st.Nodes = append(st.Nodes, row(j.Name, j.Incarnation, "joining"))
	}
	for _, n := range nodes {
		if _, waiting := live[n.Name]; waiting {
			st.Nodes = append(st.Nodes, row(n.Name, "", "joining"))
		}
	}
	return st, nil
}

// position names the role of the i-th of n members.
func position(protocol string, i, n int) string {
	switch {
	case protocol != coord.ProtocolChain && i == 0:
		return "primary"
	case protocol != coord.ProtocolChain:
		return "backup"
	case i == 0:
		return "head"
	case i == n-1:
		return "tail"
	}
	return "middle"
}

// upInfo is what `lockstep up` writes to DIR/cluster.json.
type upInfo struct {
	EtcdEndpoints []string `json:"etcd_endpoints"`
	Cluster       string   `json:"cluster"`
	Group         string   `json:"group"`
	// What a later 'up' in the same directory resumes (absent in files
	// written before it could).
	EtcdPeerURL string `json:"etcd_peer_url,omitempty"`
	Nodes       int    `json:"nodes,omitempty"`
	Protocol    string `json:"protocol,omitempty"`
	Storage     string `json:"storage,omitempty"`
}

// etcdTarget is how the admin commands find a cluster's etcd: the
// --etcd-endpoints flag, or the cluster 'lockstep up' started in --dir.
type etcdTarget struct {
	dir  string
	etcd string
}

// groupTarget is the group an admin command acts on: where its etcd is,
// and the cluster and group names.
type groupTarget struct {
	etcdTarget
	cluster string
	group   string
}

func (g *groupTarget) addFlags(cmd *cobra.Command) {
	g.etcdTarget.addFlags(cmd)
	fl := cmd.Flags()
	fl.StringVar(&g.cluster, "cluster", "lockstep", "cluster name (etcd key prefix)")
	fl.StringVar(&g.group, "group", "default", "replication group")
}

// withEtcd runs fn with a client of the target's etcd, within
// adminContext's time bound; where names the etcd for error messages.
func (t *etcdTarget) withEtcd(ctx context.Context, fn func(ctx context.Context, cli *clientv3.Client, where string) error) error {
	ctx, cancel := adminContext(ctx)
	defer cancel()
	cli, where, err := t.dial()
	if err != nil {
		return err
	}
	defer cli.Close()
	return fn(ctx, cli, where)
}

func (t *etcdTarget) addFlags(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&t.dir, "dir", "lockstep-cluster", "directory of a cluster started by 'lockstep up' (read for its etcd address)")
	fl.StringVar(&t.etcd, "etcd-endpoints", "", "comma-separated etcd client URLs (overrides --dir)")
}

// dial connects to the cluster's etcd; where names it for error messages.
// The caller closes the client.
func (t *etcdTarget) dial() (cli *clientv3.Client, where string, err error) {
	endpoints := strings.Split(t.etcd, ",")
	if t.etcd == "" {
		info, err := readUpInfo(t.dir)
		if err != nil {
			return nil, "", err
		}
		endpoints = info.EtcdEndpoints
	}
	cli, err = coord.Dial(endpoints, nil)
	return cli, "etcd at " + strings.Join(endpoints, ","), err
}

// adminContext bounds an admin command's work against etcd.
func adminContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithTimeout(ctx, 10*time.Second)
}

func readUpInfo(dir string) (upInfo, error) {
	var info upInfo
	b, err := os.ReadFile(filepath.Join(dir, "cluster.json"))
	if err != nil {
		return info, fmt.Errorf("no cluster started by 'lockstep up' in %s (use --dir or --etcd-endpoints): %w", dir, err)
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return info, fmt.Errorf("%s/cluster.json: %w", dir, err)
	}
	return info, nil
}
