// Package prometheus holds the alerting rules shipped for lockstep
// (alerts.yml) and the test that keeps them valid and in step with the
// metrics the code exports.
package prometheus

import (
	"os"
	"os/exec"
	"regexp"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstep/lockstep/dedup"
	"github.com/lockstep/lockstep/kv"
	"github.com/lockstep/lockstep/replica"
	"github.com/lockstep/lockstep/server"
	"github.com/lockstep/lockstep/storage"
)

// TestAlertsUseExportedMetrics: every lockstep metric an alert reads is
// one a node exports, so a renamed metric cannot leave an alert silent.
func TestAlertsUseExportedMetrics(t *testing.T) {
	rules, err := os.ReadFile("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	exported := exportedMetrics(t)
	used := regexp.MustCompile(`\blockstep_[a-z_]+\b`).FindAllString(string(rules), -1)
	if len(used) == 0 {
		t.Fatal("alerts.yml reads no lockstep metric")
	}
	for _, name := range used {
		if !exported[name] {
			t.Errorf("alerts.yml reads %s, which no node exports", name)
		}
	}
}

// TestAlertsPassPromtool runs `promtool check rules` on alerts.yml.
func TestAlertsPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed; it comes with Debian's prometheus package: apt-get install prometheus")
	}
	out, err := exec.Command(promtool, "check", "rules", "alerts.yml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules alerts.yml: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// exportedMetrics gathers the metric names a cluster node registers: the
// server's and its replica's.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	store := storage.NewMemory()
	m, err := dedup.Wrap(kv.New(store, kv.Options{}), 0)
	if err != nil {
		t.Fatal(err)
	}
	r, err := replica.New(replica.Options{Name: "n1", Machine: m, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	server.NewMetrics(reg)
	reg.MustRegister(r.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	return names
}
