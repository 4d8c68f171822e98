package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/lockstep/lockstep/coord"
)

type fenceFlags struct {
	target  etcdTarget
	cluster string
	name    string
	pid     int
}

// errNoProof: fence found no proof that the node's process is dead, and
// refused to act.
var errNoProof = errors.New("lockstep: no proof that the process is dead; not fencing")

func newFenceCmd() *cobra.Command {
	f := &fenceFlags{}
	cmd := &cobra.Command{
		Use:   "fence",
		Short: "Tell the cluster that a node's process is dead, so it fails over now",
		Long: `Declare a node's process dead: its coordinator lease is revoked, and its
group reconfigures within milliseconds instead of waiting for the lease to
expire (--lease-ttl, 2s by default).

A process that is still running would go on answering reads after its
lease is revoked, so fence acts only on proof of death, which it checks
itself: run it on the host where the process ran, after the process has
exited, from a supervisor whose wait for it returned (systemd:
ExecStopPost=). It refuses, and exits non-zero, when the node registered
from another host (or from a server too old to record its host), or when
its pid is still running on this host. A node that is merely unreachable
(a hung process, a host cut off or powered off) is not fenced: it is
removed when its lease expires, which is also what stops it from serving.
With --pid, nothing is revoked if the name is registered by another
process (a restarted one). 'lockstep up' and each server's watchdog fence
the processes they watch by themselves when those exit.`,
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
	i := slices.IndexFunc(nodes, func(n coord.NodeInfo) bool { return n.Name == f.name })
	if i < 0 {
		fmt.Fprintf(out, "%s: nothing to fence (not registered, or already gone)\n", f.name)
		return nil
	}
	n := nodes[i]
	if f.pid != 0 && n.Pid != f.pid {
		fmt.Fprintf(out, "%s: nothing to fence (registered by pid %d, another process)\n", f.name, n.Pid)
		return nil
	}
	host, _ := os.Hostname() // empty if unknown: then no record matches it
	if err := proveDead(n, host, func(pid int) error { return syscall.Kill(pid, 0) }); err != nil {
		return err
	}
	// The pid proven dead, not f.pid: a process that registered the name
	// since the read above is not the one proven dead.
	fenced, err := coord.Fence(ctx, cli, f.cluster, f.name, n.Pid)
	if err != nil {
		return err
	}
	if !fenced {
		fmt.Fprintf(out, "%s: nothing to fence (registered by another process since, or already gone)\n", f.name)
		return nil
	}
	fmt.Fprintf(out, "%s: fenced; its group reconfigures now\n", f.name)
	return nil
}

// proveDead returns nil only if n's process is certainly dead: it
// registered from this host (host) and its pid is not running here
// (signal0, which is kill(pid, 0), fails with ESRCH). A pid can only be
// checked on its own host, so a registration from another host, or one
// without a host (a server older than this check), is no proof; nor is a
// pid that exists but may not be signalled (EPERM). Whether the node's
// client port accepts connections proves nothing: a live node may be
// unreachable from here.
func proveDead(n coord.NodeInfo, host string, signal0 func(pid int) error) error {
	switch {
	case n.Pid <= 0:
		return fmt.Errorf("%w: %s registered no pid", errNoProof, n.Name)
	case n.Host == "":
		return fmt.Errorf("%w: %s (pid %d) registered no host name, so its pid cannot be checked; its lease will expire instead",
			errNoProof, n.Name, n.Pid)
	case n.Host != host:
		return fmt.Errorf("%w: %s (pid %d) runs on host %s, not here (%s): fence only on the host where the process died",
			errNoProof, n.Name, n.Pid, n.Host, host)
	}
	switch err := signal0(n.Pid); {
	case errors.Is(err, syscall.ESRCH):
		return nil
	case err == nil || errors.Is(err, syscall.EPERM):
		return fmt.Errorf("%w: %s: pid %d is still running", errNoProof, n.Name, n.Pid)
	default:
		return fmt.Errorf("%w: %s: cannot check pid %d: %v", errNoProof, n.Name, n.Pid, err)
	}
}
