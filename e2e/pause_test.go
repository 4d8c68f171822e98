package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestPauseHoldsReconfiguration: while an operator has paused the group,
// the death of a member changes nothing (the coordinator neither removes
// nor replaces it) and status says the group is paused; after resume the
// group reconfigures at once.
func TestPauseHoldsReconfiguration(t *testing.T) {
	c := startClusterWith(t, 3, chainProto)
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(lockstepBin, append(args, "--etcd-endpoints", c.endpoints)...).CombinedOutput()
		if err != nil {
			t.Fatalf("lockstep %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("pause", "--reason", "maintenance of n3")
	before := c.status()
	if !strings.Contains(before.Paused, "maintenance of n3") {
		t.Fatalf("status while paused: %+v; want the pause and its reason", before)
	}
	c.procs["n3"].Kill()
	// The watchdog fences a killed node within milliseconds, and an
	// unpaused group reconfigures then; a second of quiet is the point.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if st := c.status(); st.Epoch != before.Epoch {
			t.Fatalf("the paused group moved from epoch %d to %d: %+v", before.Epoch, st.Epoch, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(run("status"), "automation paused") {
		t.Fatal("status does not show the pause")
	}
	run("resume")
	st := c.waitMembers(2, 30*time.Second)
	if st.Epoch <= before.Epoch || st.Paused != "" {
		t.Fatalf("after resume: %+v; want a new epoch without n3 and no pause", st)
	}
}
