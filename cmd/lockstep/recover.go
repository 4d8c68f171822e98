package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lockstep/lockstep/coord"
)

type recoverFlags struct {
	groupTarget
	yes bool
}

// errNotConfirmed: recover described what it would do and was not told to
// go ahead.
var errNotConfirmed = errors.New("lockstep: not confirmed; run again with --yes to re-form the group")

func newRecoverCmd() *cobra.Command {
	f := &recoverFlags{}
	cmd := &cobra.Command{
		Use:   "recover",
		Short: "Re-form a group that is down after a total outage from the members whose data is back",
		Long: `After every member of a group died at once, the group re-forms by itself
once a process restarted on each member's data directory has registered
('lockstep status' says whom it waits for). If a member's data directory
is gone for good (a lost disk, a replaced host), the group would wait
forever: recover re-forms it from the members that are back on their own
data, in the same order, and names the ones left out.

What may be lost: every member that had caught up holds every write that
was acknowledged, since a write is acknowledged only once it is on disk on
every member. So writes are lost only if the members left out include the
only ones that had caught up (a member that joined just before the outage
may lack some), and writes that were never acknowledged may be kept or
lost. Members left out can join again later on empty data directories.

Without --yes, recover only says what it would do.`,
		Example: `  lockstep status --dir lockstep-cluster     # group down: waiting for ... n3
  lockstep recover --dir lockstep-cluster --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRecover(cmd.Context(), f, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	f.groupTarget.addFlags(cmd)
	fl.BoolVar(&f.yes, "yes", false, "re-form the group (without it, only say what would be done)")
	return cmd
}

func runRecover(ctx context.Context, f *recoverFlags, out io.Writer) error {
	ctx, cancel := adminContext(ctx)
	defer cancel()
	cli, where, err := f.dial()
	if err != nil {
		return err
	}
	defer cli.Close()
	cur, err := coord.GetConfig(ctx, cli, f.cluster, f.group)
	if err != nil {
		return fmt.Errorf("read group %s from %s: %w", f.group, where, err)
	}
	nodes, err := coord.ListNodes(ctx, cli, f.cluster)
	if err != nil {
		return fmt.Errorf("read nodes from %s: %w", where, err)
	}
	next, missing, err := coord.ForceRecovery(cur, nodes)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "group %s (epoch %d) re-forms at epoch %d from %s\n", f.group, cur.Epoch, next.Epoch, memberNames(next.Members))
	if len(missing) > 0 {
		fmt.Fprintf(out, "left out, their data not back: %s; writes only they held are lost (only a member that had not caught up may lack acknowledged writes)\n",
			memberNames(missing))
	}
	if !f.yes {
		return errNotConfirmed
	}
	if _, err := coord.CASConfig(ctx, cli, f.cluster, f.group, cur, next, "recover (forced by an operator): left out "+memberNames(missing)); err != nil {
		return fmt.Errorf("write the configuration: %w", err)
	}
	fmt.Fprintln(out, "done: the group serves again once its members have the new configuration")
	return nil
}

func memberNames(ms []coord.Member) string { return strings.Join(memberNamesList(ms), ", ") }
