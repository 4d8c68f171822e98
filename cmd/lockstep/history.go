package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lockstep/lockstep/coord"
)

type historyFlags struct {
	groupTarget
	json bool
	last int
}

func newHistoryCmd() *cobra.Command {
	f := &historyFlags{}
	cmd := &cobra.Command{
		Use:   "history",
		Short: "List a group's reconfigurations: when, why, and the configuration before and after",
		Long: `Every configuration a group's coordinator writes (bootstrap, a member
removed, a joiner added or promoted, a takeover, a re-formation after a
total outage, a forced recovery) is recorded with its time and reason in
the same etcd transaction. history lists them, oldest first; the last 1000
are kept.`,
		Example: `  lockstep history --dir lockstep-cluster
  lockstep history --etcd-endpoints http://etcd1:2379 --last 20 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runHistory(cmd.Context(), f, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	f.groupTarget.addFlags(cmd)
	fl.BoolVar(&f.json, "json", false, "print JSON (one array of changes) instead of a table")
	fl.IntVar(&f.last, "last", 0, "show only the last N changes (0: all)")
	return cmd
}

func runHistory(ctx context.Context, f *historyFlags, out io.Writer) error {
	if f.last < 0 {
		return fmt.Errorf("--last %d: must not be negative", f.last)
	}
	var h []coord.Change
	err := f.withEtcd(ctx, func(ctx context.Context, cli *clientv3.Client, where string) (err error) {
		if h, err = coord.History(ctx, cli, f.cluster, f.group); err != nil {
			return fmt.Errorf("read history of group %s from %s: %w", f.group, where, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if f.last > 0 && len(h) > f.last {
		h = h[len(h)-f.last:]
	}
	if f.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(h)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EPOCH\tTIME\tMEMBERS\tJOINING\tREASON")
	for _, ch := range h {
		joining := "-"
		if ch.Next.Joining != nil {
			joining = ch.Next.Joining.Name
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", ch.Epoch, ch.Time.Local().Format(time.DateTime+".000"),
			strings.Join(memberNamesList(ch.Next.Members), ","), joining, ch.Reason)
	}
	return tw.Flush()
}

func memberNamesList(ms []coord.Member) []string {
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Name
	}
	return names
}
