// Command lockstep runs and operates lockstep nodes: a fault-tolerant,
// replicated key-value store that speaks the Redis protocol.
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise the module version from the build info is used.
var version = ""

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "lockstep:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "lockstep",
		Short: "A fault-tolerant replicated key-value store that speaks the Redis protocol",
		Long: `lockstep is a replicated key-value store. Clients speak RESP, the Redis
protocol, so redis-cli, redis-benchmark and Redis client libraries work
unchanged.

Start a local 3-node cluster with 'lockstep up', one node with 'lockstep
server', load any of them with 'lockstep bench', and copy a Redis server's
keys into them with 'lockstep migrate'.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServerCmd(), newUpCmd(), newStatusCmd(), newFenceCmd(), newWatchdogCmd(), newBenchCmd(), newMigrateCmd(), newBackupCmd(), newRestoreCmd(), newRecoverCmd(), newHistoryCmd(), newPauseCmd(), newResumeCmd(), newVersionCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the lockstep version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "lockstep %s (%s %s/%s)\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		},
	}
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
