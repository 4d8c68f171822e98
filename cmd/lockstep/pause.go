package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep/lockstep/coord"
)

type pauseFlags struct {
	groupTarget
	reason string
}

func newPauseCmd() *cobra.Command {
	f := &pauseFlags{}
	cmd := &cobra.Command{
		Use:   "pause",
		Short: "Pause a group's automation for maintenance: no failover, removal or join until resume",
		Long: `While a group is paused its coordinator changes nothing: a member that
dies is not removed (and if it ordered writes, nobody takes over), no node
joins and no joiner is promoted. The nodes go on serving in the
configuration they have, so an operator can restart or move them without
the group reacting. 'lockstep status' shows the pause; 'lockstep resume'
ends it, and the coordinator then catches up with whatever happened.`,
		Example: `  lockstep pause --dir lockstep-cluster --reason "kernel upgrade on n2"
  lockstep resume --dir lockstep-cluster`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPause(cmd.Context(), f, true, cmd.OutOrStdout())
		},
	}
	f.addFlags(cmd)
	cmd.Flags().StringVar(&f.reason, "reason", "", "why, shown by 'lockstep status'")
	return cmd
}

func newResumeCmd() *cobra.Command {
	f := &pauseFlags{}
	cmd := &cobra.Command{
		Use:   "resume",
		Short: "Resume a paused group's automation (see pause)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPause(cmd.Context(), f, false, cmd.OutOrStdout())
		},
	}
	f.addFlags(cmd)
	return cmd
}

func runPause(ctx context.Context, f *pauseFlags, pause bool, out io.Writer) error {
	err := f.withEtcd(ctx, func(ctx context.Context, cli *clientv3.Client, where string) (err error) {
		if pause {
			err = coord.SetPause(ctx, cli, f.cluster, f.group, f.reason)
		} else {
			err = coord.ClearPause(ctx, cli, f.cluster, f.group)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if pause {
		fmt.Fprintf(out, "group %s paused: no failover, removal or join until 'lockstep resume'\n", f.group)
	} else {
		fmt.Fprintf(out, "group %s resumed\n", f.group)
	}
	return nil
}
