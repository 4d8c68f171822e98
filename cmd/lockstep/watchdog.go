package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lockstep/lockstep/coord"
)

// A server in a cluster starts a watchdog: a small child process that holds
// the read end of a pipe whose write end only the server holds. The kernel
// closes that end when the server's process ends, however it ends (a
// crash, a panic, SIGKILL, the OOM killer), and nothing else closes it, so
// end of file on the pipe is proof of death, the same signal PostgreSQL's
// children use to notice that the postmaster died. The watchdog then
// fences the node (coord.Fence), and its group fails over within
// milliseconds instead of waiting for the lease to expire. A server that
// hangs or is cut off keeps its pipe open and is left to its lease, which
// is what keeps a live but unreachable node from serving once its group has
// moved on. If the watchdog itself is killed, the lease still applies.

type watchdogFlags struct {
	etcd    string
	cluster string
	name    string
	pid     int
}

func newWatchdogCmd() *cobra.Command {
	f := &watchdogFlags{}
	cmd := &cobra.Command{
		Use:    "watchdog",
		Short:  "Internal: fence a server the moment its process ends (started by 'lockstep server')",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runWatchdog(f, os.Stdin)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.etcd, "etcd-endpoints", "", "comma-separated etcd client URLs")
	fl.StringVar(&f.cluster, "cluster", "lockstep", "cluster name")
	fl.StringVar(&f.name, "name", "", "the watched node's name")
	fl.IntVar(&f.pid, "pid", 0, "the watched node's process id")
	return cmd
}

// runWatchdog waits for end of file on death, then fences the node; a
// byte read first means the server left cleanly (watchdogStandDown).
func runWatchdog(f *watchdogFlags, death io.Reader) error {
	if f.etcd == "" || f.name == "" || f.pid <= 0 {
		return fmt.Errorf("watchdog: --etcd-endpoints, --name and --pid are required")
	}
	// Signals meant for the server (Ctrl-C in its terminal) must not end
	// the watchdog first: it ends when the server does. Nor may a closed
	// stderr (the server's log pipe, gone with it): writes then fail.
	signal.Ignore(os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).
		With("component", "watchdog", "node", f.name, "pid", f.pid)
	cli, err := coord.Dial(strings.Split(f.etcd, ","), nil) // ready before it is needed
	if err != nil {
		return err
	}
	defer cli.Close()
	if n, _ := io.ReadFull(death, make([]byte, 1)); n == 1 {
		return nil // the server left the cluster itself: nothing to fence
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fenced, err := coord.Fence(ctx, cli, f.cluster, f.name, f.pid)
	switch {
	case err != nil:
		log.Warn("the server process ended; fencing failed, its lease will expire instead", "err", err)
	case fenced:
		log.Info("the server process ended; lease revoked, the group reconfigures now")
	}
	return nil
}

// watchdogStandDown tells the watchdog, before its pipe closes, that the
// server revoked its own lease on the way out: there is nothing to fence,
// and the watchdog need not reach etcd (which may be stopping too, under
// 'lockstep up').
func watchdogStandDown(w *os.File) { _, _ = w.Write([]byte{'.'}) }

// startWatchdog starts the watchdog for this process and returns the write
// end of its pipe, which the caller keeps open (and referenced) for as
// long as the process serves.
func startWatchdog(cf *clusterFlags) (*os.File, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("watchdog: %w", err)
	}
	r, w, err := os.Pipe() // both ends close-on-exec: no other child inherits w
	if err != nil {
		return nil, fmt.Errorf("watchdog: %w", err)
	}
	cmd := exec.Command(self, "watchdog", "--etcd-endpoints", cf.etcd, "--cluster", cf.cluster,
		"--name", cf.name, "--pid", strconv.Itoa(os.Getpid()))
	cmd.Stdin, cmd.Stderr = r, os.Stderr
	err = cmd.Start()
	r.Close()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("watchdog: %w", err)
	}
	go func() { _ = cmd.Wait() }() // reap it if it ends first
	return w, nil
}
