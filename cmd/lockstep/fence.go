package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/lockstep/lockstep/coord"
)

type fenceFlags struct {
	target  etcdTarget
	cluster string
	name    string
	pid     int
}

func newFenceCmd() *cobra.Command {
	f := &fenceFlags{}
	cmd := &cobra.Command{
		Use:   "fence",
		Short: "Tell the cluster that a node's process is dead, so it fails over now",
		Long: `Declare a node's process dead: its coordinator lease is revoked, and its
group reconfigures within milliseconds instead of waiting for the lease to
expire (--lease-ttl, 2s by default).

Run it only when the process is certainly gone: from a supervisor, after
its wait for the process returned (systemd: ExecStopPost=). A node that is
still running but unreachable must be left to its lease, which is what
stops it from serving once its group has moved on. As a guard, fence
refuses when the node's client address still accepts connections, and
with --pid it revokes nothing if the name is registered by another
process (a restarted one). 'lockstep up' fences the nodes it runs by
itself when they exit.`,
		Example: `  lockstep fence --etcd-endpoints http://10.0.0.5:2379 --name n2 --pid 4242
  lockstep fence --dir lockstep-cluster --name n2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runFence(cmd.Context(), f, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	f.target.addFlags(cmd)
	fl.StringVar(&f.cluster, "cluster", "lockstep", "cluster name (etcd key prefix)")
	fl.StringVar(&f.name, "name", "", "name of the dead node (required)")
	fl.IntVar(&f.pid, "pid", 0, "process id of the dead node; if the name is registered by another pid, nothing is fenced (0: any)")
	return cmd
}

func runFence(ctx context.Context, f *fenceFlags, out io.Writer) error {
	if f.name == "" {
		return fmt.Errorf("--name is required")
	}
	ctx, cancel := adminContext(ctx)
	defer cancel()
	cli, where, err := f.target.dial()
	if err != nil {
		return err
	}
	defer cli.Close()
	nodes, err := coord.ListNodes(ctx, cli, f.cluster)
	if err != nil {
		return fmt.Errorf("read nodes from %s: %w", where, err)
	}
	for _, n := range nodes {
		if n.Name == f.name && n.ClientAddr != "" && accepts(ctx, n.ClientAddr) {
			return fmt.Errorf("node %s still accepts connections at %s: not fencing a live process", n.Name, n.ClientAddr)
		}
	}
	fenced, err := coord.Fence(ctx, cli, f.cluster, f.name, f.pid)
	if err != nil {
		return err
	}
	if !fenced {
		fmt.Fprintf(out, "%s: nothing to fence (not registered, registered by another process, or already gone)\n", f.name)
		return nil
	}
	fmt.Fprintf(out, "%s: fenced; its group reconfigures now\n", f.name)
	return nil
}

// accepts reports whether addr takes a TCP connection within a second.
func accepts(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
