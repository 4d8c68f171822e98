package e2e

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/lockstep/lockstep/coord"
)

// TestHistoryListsReconfigurations: after a bootstrap, the SIGKILL of the
// middle and its restart, `lockstep history` lists every configuration
// the group went through, epoch by epoch, each with its reason: the
// bootstrap, the removal, the new joiner and its promotion.
func TestHistoryListsReconfigurations(t *testing.T) {
	c := startClusterWith(t, 3, chainProto)
	c.procs["n2"].Kill()
	c.waitMembers(2, 30*time.Second)
	c.start("n2")
	st := c.waitMembers(3, 60*time.Second)
	out, err := exec.Command(lockstepBin, "history", "--etcd-endpoints", c.endpoints, "--json").Output()
	if err != nil {
		t.Fatalf("lockstep history: %v", err)
	}
	var h []coord.Change
	if err := json.Unmarshal(out, &h); err != nil {
		t.Fatalf("lockstep history --json: %v\n%s", err, out)
	}
	if len(h) == 0 || h[len(h)-1].Epoch != st.Epoch {
		t.Fatalf("history ends at epoch %v; the group is at %d:\n%s", len(h), st.Epoch, out)
	}
	var reasons []string
	for i, ch := range h {
		if ch.Epoch != uint64(i+1) || ch.Reason == "" || ch.Time.IsZero() || (i > 0) != (ch.Prev != nil) {
			t.Fatalf("entry %d: %+v; want epoch %d with a reason, a time, and the configuration it replaced", i, ch, i+1)
		}
		reasons = append(reasons, ch.Reason)
	}
	all := strings.Join(reasons, " | ")
	for _, want := range []string{"bootstrap", "remove", "n2"} {
		if !strings.Contains(all, want) {
			t.Errorf("no reason mentions %q: %s", want, all)
		}
	}
	table, err := exec.Command(lockstepBin, "history", "--etcd-endpoints", c.endpoints, "--last", "1").Output()
	if err != nil || strings.Count(strings.TrimSpace(string(table)), "\n") != 1 {
		t.Fatalf("history --last 1 = %q, %v; want a header and one row", table, err)
	}
}
