package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestSecondServerUnderALiveName starts a second server under the name of
// the live tail. It must not take the name over (the tail would be
// removed from its chain while its lease kept it answering reads): it
// waits for the tail's registration to end, says so, and exits with
// "node name in use", while the tail keeps its place and the epoch does
// not move.
func TestSecondServerUnderALiveName(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: runs a whole cluster")
	}
	c := startClusterWith(t, 3, "")
	before := c.status()
	tail := before.byRole("tail")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, lockstepBin, "server", "--name", tail, "--listen", "127.0.0.1:0",
		"--etcd-endpoints", c.endpoints, "--storage", "memory", "--bootstrap-expect", "3",
		"--lease-ttl", "2s", "--fence-on-exit=false").CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("a second server named %s: %v (want it to exit with an error)\n%s", tail, err, out)
	}
	for _, want := range []string{"waiting for the registration of " + tail + " held by incarnation", "node name in use by a live process"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("second server's output lacks %q:\n%s", want, out)
		}
	}
	after := c.status()
	if after.byRole("tail") != tail || after.serving() != 3 || after.Epoch != before.Epoch {
		t.Fatalf("the live tail lost its place: before %s epoch %d, after %s epoch %d",
			statusRoles(before), before.Epoch, statusRoles(after), after.Epoch)
	}
	mustSet(t, c.procs[tail].Addr, "k", "v")
}
