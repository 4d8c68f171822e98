package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lockstep/lockstep/backup"
)

// newBackupCmd builds `lockstep backup`, which streams a consistent backup
// of a running cluster into a file.
func newBackupCmd() *cobra.Command {
	o := backup.TakeOptions{Addr: "127.0.0.1:6390"}
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Write a consistent backup of a running cluster's data to a file",
		Long: `backup streams the data of a running cluster into a file, without
stopping writes.

Consistency: the backup is the group's state at one commit point, one
applied sequence number (seq): it holds every write acknowledged to a
client before the backup started, and no write numbered after that seq.
Any node of the cluster can be named with --addr; the node whose state is
committed serves it and the others relay its stream. Under chain
replication that is the tail, whose state is committed as it applies it.
Under primary-backup and checkpoint it is the primary, whose state runs
ahead of its backups (speculatively, under checkpoint): it waits until
every backup holds the seq (under checkpoint, until a checkpoint holding
it is installed on every backup) before it sends anything. A failover
meanwhile makes it ask again. (A standalone server does not serve
backups.)

What is in it: every key with its value and absolute expiry time (keys
that have expired but were not deleted yet included), the seq, the
cluster, group and protocol names, the key count and a SHA-256 data
digest of the records. What is not: the exactly-once (dedup) records
that answer a client's retry of a request it already sent, which mean
nothing to a new cluster; nor the history before the seq.

The file is written to a temporary file beside --out, checked against the
node's own count and digest of the records it sent, synced and only then
renamed to --out, so a backup cut short never takes the name of a good
one. Progress goes to stderr once a second; the last line, on stdout,
names the seq, the key count and the digest.`,
		Example: `  lockstep backup --addr 127.0.0.1:6390 --out cluster.lsbackup`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Out == "" {
				return errors.New("--out is required: the backup file to write")
			}
			ctx, stop := signal.NotifyContext(commandContext(cmd), os.Interrupt, syscall.SIGTERM)
			defer stop()
			o.Progress = cmd.ErrOrStderr()
			res, err := backup.Take(ctx, o)
			if err != nil {
				return err
			}
			h := res.Header
			fmt.Fprintf(cmd.OutOrStdout(), "backup %s: seq %d, %d keys, sha256 %s, %d bytes (cluster %q, group %q, %s) in %v\n",
				res.Path, h.Seq, h.Keys, backup.FormatDigest(h.Digest), res.Size,
				h.Cluster, h.Group, h.Protocol, res.Elapsed.Round(time.Millisecond))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Addr, "addr", o.Addr, "host:port of any node of the cluster")
	f.StringVar(&o.Out, "out", "", "the backup file to write (replaced only by a complete backup)")
	f.StringVar(&o.Password, "password", "", "send AUTH with this password first")
	return cmd
}

// newRestoreCmd builds `lockstep restore`, which seeds a new cluster from
// a backup file.
func newRestoreCmd() *cobra.Command {
	o := backup.RestoreOptions{Addr: "127.0.0.1:6390"}
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Seed a new, empty cluster from a backup file",
		Long: `restore loads a backup written by 'lockstep backup' into a running cluster,
normally a new and empty one.

First it reads the whole file and checks it: the header's checksum, the
body's checksum and length, the record count and the data digest. A
truncated or damaged file is refused before anything is written. It then
refuses a target that holds any key, unless --force (the backup's keys
then overwrite the target's, and the other keys stay).

It loads every key with its absolute expiry time, through any node (writes
are forwarded to the node that orders them) over --connections pipelined
connections. Keys already expired when their turn comes are skipped and
counted. The restored cluster starts its own history: its seq does not
continue the source's, and it holds no dedup records.

Verification: once loaded, it compares the data digest the target computes
over its committed state (LOCKSTEP.DATADIGEST) with the digest of the
file's records. Keys that expire within 5 seconds of the check are left
out of both sides, since the target deletes keys as they expire; when no
key is left out, the digest compared is the one the backup recorded. A
mismatch is an error.`,
		Example: `  lockstep restore --in cluster.lsbackup --addr 127.0.0.1:7390`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.In == "" {
				return errors.New("--in is required: the backup file to restore")
			}
			if o.Conns < 1 {
				return fmt.Errorf("--connections %d: must be at least 1", o.Conns)
			}
			ctx, stop := signal.NotifyContext(commandContext(cmd), os.Interrupt, syscall.SIGTERM)
			defer stop()
			o.Progress = cmd.ErrOrStderr()
			res, err := backup.Restore(ctx, o)
			if err != nil && !errors.Is(err, backup.ErrVerify) {
				return err
			}
			printRestore(cmd, res, err)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.In, "in", "", "the backup file to restore")
	f.StringVar(&o.Addr, "addr", o.Addr, "host:port of any node of the target cluster")
	f.BoolVar(&o.Force, "force", false, "load even if the target holds keys")
	f.IntVar(&o.Conns, "connections", 8, "connections that load in parallel")
	f.StringVar(&o.Password, "password", "", "send AUTH with this password first")
	return cmd
}

// printRestore prints the outcome of a restore and of its verification,
// which failed if verr is not nil.
func printRestore(cmd *cobra.Command, res backup.RestoreResult, verr error) {
	out := cmd.OutOrStdout()
	h := res.Header
	fmt.Fprintf(out, "restored %d keys from the backup of seq %d (cluster %q, group %q), skipped %d expired, in %v\n",
		res.Loaded, h.Seq, h.Cluster, h.Group, res.Expired, res.Elapsed.Round(time.Millisecond))
	switch {
	case verr != nil:
		fmt.Fprintln(out, "NOT verified: the target's data differs from the backup")
	case res.Recorded:
		fmt.Fprintf(out, "verified: the target's data digest equals the backup's, %d keys, sha256 %s\n", res.Compared, res.Digest)
	default:
		fmt.Fprintf(out, "verified: the target's data digest equals the backup's over the %d keys alive after %s, sha256 %s\n",
			res.Compared, time.UnixMilli(res.AliveAfter).UTC().Format(time.RFC3339), res.Digest)
	}
}

// commandContext is the command's context, or a background one.
func commandContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}
