package replica

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstep/lockstep/coord"
)

// TestReadyFollowsMembership: a node outside its group is alive but not
// ready; a complete member is ready; a retiring one is not; and the metrics an alert reads
// (serving, role, reconfigurations) say the same.
func TestReadyFollowsMembership(t *testing.T) {
	r, _ := durableReplica(t, "n0") // n1 is not in the group yet
	if err := r.Ready(); err == nil || !strings.Contains(err.Error(), "idle") {
		t.Fatalf("outside the group: Ready = %v, want not serving (idle)", err)
	}
	if err := r.Err(); err != nil {
		t.Fatalf("a node outside the group is not healthy: %v", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(r.Collectors()...)
	r.InstallConfig(t.Context(), coord.Config{Epoch: 2, Protocol: ProtocolChain,
		Members: []coord.Member{{Name: "n1", Incarnation: "i"}}})
	if err := r.Ready(); err != nil {
		t.Fatalf("the single member: Ready = %v", err)
	}
	for _, c := range []struct {
		name, role string
		want       float64
	}{{"lockstep_replica_serving", "", 1}, {"lockstep_replica_reconfigurations_total", "", 2}, {"lockstep_replica_role", "single", 1}, {"lockstep_replica_role", "joining", 0}} {
		if got := metricValue(t, reg, c.name, c.role); got != c.want {
			t.Errorf("%s{%s} = %v, want %v", c.name, c.role, got, c.want)
		}
	}
	r.BeginRetire(t.Context())
	if err := r.Ready(); err == nil || !strings.Contains(err.Error(), "stopping") {
		t.Fatalf("retiring: Ready = %v, want stopping", err)
	}
}

// metricValue is the value of the series name (with label role=role,
// if role is not "") that reg gathers.
func metricValue(t *testing.T, reg *prometheus.Registry, name, role string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if role != "" && (len(m.GetLabel()) == 0 || m.GetLabel()[0].GetValue() != role) {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no series %s{role=%q}", name, role)
	return 0
}

// TestLatencyHistograms: a write whose reply waits for the commit point is
// counted in commit_wait_seconds, and the sync before it in
// store_sync_seconds.
func TestLatencyHistograms(t *testing.T) {
	r, _ := durableReplica(t, "n1")
	reg := prometheus.NewRegistry()
	reg.MustRegister(r.Collectors()...)
	_, seq, err := r.propose("", 0, toArgs("SET", "k", "v"), nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	if !r.OnCommit(seq, func(err error) { done <- err }) {
		t.Fatal("the write committed before Flush")
	}
	r.Flush(t.Context())
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"lockstep_replica_commit_wait_seconds", "lockstep_replica_store_sync_seconds"} {
		if n := histogramCount(t, reg, name); n < 1 {
			t.Errorf("%s counted %d observations, want at least 1", name, n)
		}
	}
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatalf("no histogram %s", name)
	return 0
}
