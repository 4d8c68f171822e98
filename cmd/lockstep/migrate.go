package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
)

// The environment variables migrate reads passwords from, so they need not
// appear on a command line that every user of the machine can list.
const (
	envMigrateFromPassword = "LOCKSTEP_MIGRATE_FROM_PASSWORD"
	envMigrateToPassword   = "LOCKSTEP_MIGRATE_TO_PASSWORD"
)

// migrateFlags are the flags of `lockstep migrate`.
type migrateFlags struct {
	from, fromUser, fromPasswordFile string
	fromDB                           int
	to, toPasswordFile               string
	opts                             migrateOptions
	skipUnsupported                  bool
	timeout                          time.Duration
}

// newMigrateCmd builds `lockstep migrate`, which copies a running Redis
// server's keys into lockstep, so that users can move over without writing
// a copy script of their own and getting TTLs subtly wrong.
func newMigrateCmd() *cobra.Command {
	f := &migrateFlags{opts: migrateOptions{backoff: 100 * time.Millisecond}}
	cmd := &cobra.Command{
		Use:   "migrate --from HOST:PORT [--to HOST:PORT]",
		Short: "Copy the keys, values and TTLs of a running Redis server into lockstep",
		Long: `migrate copies the keys of a running Redis server (--from) into a running
lockstep node or cluster (--to), so applications can move to lockstep.

What is copied: every string key of database --from-db whose name matches
--match, with its value and its remaining time to live. lockstep stores
strings only for now, so keys of other types (hash, list, set, zset, stream)
are not copied: they are counted and the first few named, and migrate exits
non-zero unless --skip-unsupported says to leave them behind. A key that
expires or is deleted between the scan and the read is counted as expired.

How TTLs are carried: each batch is read in one MULTI/EXEC (TYPE, GET and
PTTL of every key). A remaining TTL becomes an absolute deadline counted
from the moment the batch was sent, and is written with SET ... PXAT, so
time spent reading and writing never lengthens a key's life; it can shorten
it by one round trip to the source. The deadline is on this machine's clock
and lockstep expires keys by its own, so keep the clocks in sync (NTP). A
key whose deadline passes before it is written is counted as expired. A key
without a TTL gets none.

Keys lockstep already holds: without --replace they are left alone (the
copy is SET ... NX). One that holds the source's value counts as already
present (its TTL is not compared); one that holds another value is a
conflict, and conflicts make migrate exit non-zero. So a migration that was
interrupted can simply be run again. With --replace the source's value and
TTL overwrite lockstep's.

Writes may go to any node: lockstep forwards them to the node that orders
writes. A write that fails in a way that may pass (connection lost,
timeout, TRYAGAIN while a cluster replaces a node) is sent again; after
--retries attempts in a row without progress migrate stops with an error.
A write lockstep refuses is counted as failed. migrate reports "complete"
only when every key it was asked to copy is in lockstep.

The source keeps serving while it is read; keys written to it meanwhile may
or may not be copied, so for an exact copy stop writes to it first.
Passwords are read from a file or the environment, never the command line.
Progress goes to stderr once a second and the summary to stdout. Ctrl-C
stops the migration; run it again to finish.`,
		Example: `  lockstep migrate --from 10.0.0.7:6379
  LOCKSTEP_MIGRATE_FROM_PASSWORD=s3cret lockstep migrate --from redis:6379 --to 127.0.0.1:6390
  lockstep migrate --from 127.0.0.1:6379 --from-db 2 --match 'session:*' --skip-unsupported`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMigrate(cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.from, "from", "", "host:port of the Redis server to copy from (required)")
	fl.StringVar(&f.fromUser, "from-user", "", "ACL user name for the source (empty: the default user)")
	fl.StringVar(&f.fromPasswordFile, "from-password-file", "", "file holding the source's password; without it $"+envMigrateFromPassword+" is used, if set")
	fl.IntVar(&f.fromDB, "from-db", 0, "source database number to copy")
	fl.StringVar(&f.to, "to", "127.0.0.1:7001", "host:port of any lockstep node; the default is the first node of 'lockstep up'")
	fl.StringVar(&f.toPasswordFile, "to-password-file", "", "file holding lockstep's --requirepass password; without it $"+envMigrateToPassword+" is used, if set")
	fl.StringVar(&f.opts.match, "match", "*", "copy only keys whose names match this glob pattern (SCAN MATCH)")
	fl.IntVar(&f.opts.batch, "batch", 500, "keys per SCAN, per read pipeline and per write pipeline; lower it for very large values")
	fl.BoolVar(&f.opts.replace, "replace", false, "overwrite keys lockstep already holds; without it they are left alone and reported as conflicts")
	fl.BoolVar(&f.skipUnsupported, "skip-unsupported", false, "succeed even though keys of types lockstep cannot store (hash, list, ...) were not copied")
	fl.IntVar(&f.opts.retries, "retries", 8, "how many times in a row writes may be resent without any of them succeeding before migrate gives up (about 10s of backoff at the default)")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Second, "how long one read or write pipeline may take before it counts as failed")
	_ = cmd.MarkFlagRequired("from")
	return cmd
}

// validate rejects flags a migration cannot start with, before anything
// connects.
func (f *migrateFlags) validate() error {
	for _, a := range []struct{ flag, addr string }{{"--from", f.from}, {"--to", f.to}} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return fmt.Errorf("%s %q: want host:port: %w", a.flag, a.addr, err)
		}
	}
	switch {
	case f.from == f.to:
		return fmt.Errorf("--from and --to are both %s: copying a server onto itself does nothing", f.from)
	case f.fromDB < 0:
		return fmt.Errorf("--from-db %d: must not be negative", f.fromDB)
	case f.opts.batch < 1 || f.opts.batch > 100000:
		return fmt.Errorf("--batch %d: want 1 to 100000", f.opts.batch)
	case f.opts.retries < 0:
		return fmt.Errorf("--retries %d: must not be negative", f.opts.retries)
	case f.timeout <= 0:
		return fmt.Errorf("--timeout %v: must be positive", f.timeout)
	}
	return nil
}

// readSecret returns the password in file when one is named, with the line
// end an editor leaves stripped, and the environment variable's value
// otherwise.
func readSecret(file, envValue string) (string, error) {
	if file == "" {
		return envValue, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// migrateClients connects to both ends. Writes are not retried by
// go-redis (MaxRetries -1): the migrator retries them itself, because it
// must know which writes may have applied to count them right.
func migrateClients(f *migrateFlags) (src, dst *redis.Client, err error) {
	fromPass, err := readSecret(f.fromPasswordFile, os.Getenv(envMigrateFromPassword))
	if err != nil {
		return nil, nil, fmt.Errorf("--from-password-file: %w", err)
	}
	toPass, err := readSecret(f.toPasswordFile, os.Getenv(envMigrateToPassword))
	if err != nil {
		return nil, nil, fmt.Errorf("--to-password-file: %w", err)
	}
	src = redis.NewClient(&redis.Options{Addr: f.from, Username: f.fromUser, Password: fromPass, DB: f.fromDB,
		ClientName: "lockstep-migrate", PoolSize: 2, ReadTimeout: f.timeout, WriteTimeout: f.timeout})
	dst = redis.NewClient(&redis.Options{Addr: f.to, Password: toPass, ClientName: "lockstep-migrate",
		PoolSize: 2, MaxRetries: -1, ReadTimeout: f.timeout, WriteTimeout: f.timeout})
	return src, dst, nil
}

// checkReachable pings both ends first, so a wrong address or password is
// reported as such before anything is copied.
func checkReachable(ctx context.Context, src, dst *redis.Client, f *migrateFlags) error {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	if err := src.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("%w at %s: %w%s", errMigrateSource, f.from, err, authHint(err, "--from-password-file", envMigrateFromPassword))
	}
	if err := dst.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("%w at %s: %w%s", errMigrateTarget, f.to, err, authHint(err, "--to-password-file", envMigrateToPassword))
	}
	return nil
}

// authHint says where a password comes from when a server refused to
// authenticate, since migrate takes none on the command line.
func authHint(err error, flag, env string) string {
	msg := err.Error()
	if strings.HasPrefix(msg, "NOAUTH") || strings.HasPrefix(msg, "WRONGPASS") {
		return fmt.Sprintf(" (give the password with %s or $%s)", flag, env)
	}
	return ""
}

// runMigrate runs a migration with Ctrl-C wired to cancellation, prints
// progress and the summary, and returns why the migration is not complete
// when it is not.
func runMigrate(cmd *cobra.Command, f *migrateFlags) error {
	if err := f.validate(); err != nil {
		return err
	}
	stderr := cmd.ErrOrStderr()
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("cmd", "migrate")
	redis.SetLogger(redisLogger{log})
	src, dst, err := migrateClients(f)
	if err != nil {
		return err
	}
	defer src.Close()
	defer dst.Close()
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := checkReachable(ctx, src, dst, f); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "lockstep migrate: %s db %d -> %s, match %q, batch %d, replace %v\n",
		f.from, f.fromDB, f.to, f.opts.match, f.opts.batch, f.opts.replace)
	m := &migrator{src: src, dst: dst, opts: f.opts, tally: &migrateTally{}, now: time.Now, log: log}
	start := time.Now()
	runErr := withProgress(stderr, m.tally, func() error { return m.run(ctx) })
	c := m.tally.snapshot()
	if err := writeMigrateSummary(cmd.OutOrStdout(), c, migrateOutcome(c, f.skipUnsupported, runErr), time.Since(start)); err != nil {
		return err
	}
	if runErr != nil {
		return runErr
	}
	if why := incompleteReasons(c, f.skipUnsupported); len(why) > 0 {
		return fmt.Errorf("%w: %s", errMigrateIncomplete, strings.Join(why, "; "))
	}
	return nil
}

// withProgress runs fn while printing progress lines to w, and returns
// only once the printer has stopped, so no line follows the summary.
func withProgress(w io.Writer, t *migrateTally, fn func() error) error {
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		reportProgress(w, t, time.Second, done)
		close(stopped)
	}()
	err := fn()
	close(done)
	<-stopped
	return err
}

// redisLogger sends go-redis's internal messages (each failed dial, for
// one) to slog at debug level: the errors that matter reach the user
// through the migration's own error, once.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...))
}
