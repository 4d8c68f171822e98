// Package e2e tests lockstep the way users run it: real processes on
// loopback, real clients (go-redis, redis-cli, redis-benchmark), and SIGKILL
// for failures.
package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/lockstep/lockstep/internal/proctest"
)

// lockstepBin is the binary built once for the whole package.
var lockstepBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
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
