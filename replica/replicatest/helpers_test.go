package replicatest

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/lockstep/lockstep/internal/proctest"
	"github.com/lockstep/lockstep/replica"
	"github.com/lockstep/lockstep/resp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// protocols are the replication protocols every test runs under.
var protocols = []string{replica.ProtocolChain, replica.ProtocolPrimaryBackup, replica.ProtocolCheckpoint}

// testSeed returns LOCKSTEP_SEED if set, else one from the clock, and
// logs the command that replays it. The seed fixes the harness's choices
// (incarnations, the order of concurrent clients' operations); goroutine
// scheduling stays the machine's.
func testSeed(t *testing.T) uint64 { return proctest.Seed(t, "./replica/replicatest/") }

// startGroup starts a three-replica group running protocol, installs
// the first configuration (r1 first) and waits until every replica
// serves in it. The cluster is closed when the test ends.
func startGroup(t *testing.T, ctx context.Context, protocol string) *Cluster {
	t.Helper()
	return startCluster(t, ctx, protocol, []string{"r1", "r2", "r3"})
}

// startCluster starts replicas of names and makes the first three the
// group; any others wait outside it.
func startCluster(t *testing.T, ctx context.Context, protocol string, names []string) *Cluster {
	t.Helper()
	return startWith(t, ctx, Options{Protocol: protocol, Names: names, Seed: testSeed(t)})
}

// startWith is startCluster with the options given (a test's logger
// unless they have one).
func startWith(t *testing.T, ctx context.Context, opts Options) *Cluster {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger()
	}
	c, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	reconfigure(t, ctx, c, View{Members: []string{"r1", "r2", "r3"}})
	return c
}

// testLogger discards the replicas' logs unless the test runs verbose
// with LOCKSTEP_LOG set.
func testLogger() *slog.Logger {
	if testing.Verbose() && os.Getenv("LOCKSTEP_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// reconfigure hands out v and waits until its members serve in it.
func reconfigure(t *testing.T, ctx context.Context, c *Cluster, v View) {
	t.Helper()
	cfg, err := c.Configure(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitRoles(ctx, cfg.Epoch, c.Roles(cfg)); err != nil {
		t.Fatal(err)
	}
}

// reader is the member of members that answers reads: a chain's tail or
// the primary.
func reader(protocol string, members []string) string {
	if protocol == replica.ProtocolChain {
		return members[len(members)-1]
	}
	return members[0]
}

// show renders a reply or an error for messages.
func show(v resp.Value, err error) string {
	switch {
	case err != nil:
		return "error " + err.Error()
	case v.Type == ':':
		return ":" + strconv.FormatInt(v.Int, 10)
	case v.Null:
		return "(nil)"
	default:
		return string(v.Type) + string(v.Str)
	}
}

// isValue reports whether a reply carries data: not an error of either
// kind (a Go error, or a RESP error line such as TRYAGAIN).
func isValue(v resp.Value, err error) bool { return err == nil && v.Type != '-' }

// expect returns a check that fails the test unless a reply is exactly
// want (as show renders it); it takes a request's results directly:
// expect(t, "read", "$v")(n.Read(ctx, "GET", "k")).
func expect(t *testing.T, what string, want string) func(resp.Value, error) {
	return func(v resp.Value, err error) {
		t.Helper()
		if got := show(v, err); got != want {
			t.Fatalf("%s: got %s, want %s", what, got, want)
		}
	}
}

// probeCtx bounds one request that should be refused: under a bug it may
// instead wait for a commit that cannot come.
func probeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, time.Second)
}
