// Package e2e tests lockstep the way users run it: real processes on
// loopback, real clients (go-redis, redis-cli, redis-benchmark), and SIGKILL
// for failures.
package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/lockstep/lockstep/internal/proctest"
)

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// lockstepBin is the binary built once for the whole package.
var lockstepBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// go-redis logs every failed dial; the failover tests cause many.
	redis.SetLogger(quietLogger{})
	root, err := proctest.ModuleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "lockstep-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if lockstepBin, err = proctest.BuildLockstep(root, dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}
