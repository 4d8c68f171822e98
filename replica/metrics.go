package replica

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstep/lockstep/protocol"
)

// Collectors returns Prometheus collectors of the replica's progress and,
// under checkpoint replication, of its checkpoints. They read the replica
// at scrape time.
func (r *Replica) Collectors() []prometheus.Collector {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "lockstep", Subsystem: "replica", Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "lockstep", Subsystem: "replica", Name: name, Help: help}, f)
	}
	cs := []prometheus.Collector{
		gauge("epoch", "Configuration epoch the replica runs in.", func() float64 { return float64(r.Epoch()) }),
		gauge("applied_seq", "Last sequence number applied to the state.", func() float64 { return float64(r.Status().Applied) }),
		gauge("commit_seq", "Commit point: replies up to it may be released.", func() float64 { return float64(r.commit.seq.Load()) }),
		gauge("backup_lag", "At a primary, how far its slowest backup is behind.", func() float64 { return float64(r.Status().Lag) }),
		gauge("log_retained_entries", "Entries held in the replication log: for peers, and history kept for members that rejoin (--log-retention).", func() float64 { return float64(r.Status().Retained) }),
		gauge("log_retained_bytes", "Data size of the entries held in the replication log.", func() float64 { return float64(r.Status().RetainedBytes) }),
		counter("forwarded_total", "Requests forwarded to the replica that orders writes or answers reads.", func() float64 { return float64(r.stats.forwarded.Load()) }),
		counter("snapshots_installed_total", "Snapshots (full copies of a peer's state) this replica installed.", func() float64 { return float64(r.stats.installed.Load()) }),
		counter("snapshot_installed_bytes_total", "Bytes of the snapshots this replica installed.", func() float64 { return float64(r.stats.installedBytes.Load()) }),
	}
	cs = append(cs, r.stateCollectors(gauge, counter)...)
	cs = append(cs, r.hist.commitWait, r.hist.sync)
	if r.Status().Epochs.Interval <= 0 {
		return cs
	}
	epochs := func() protocol.EpochStatus { return r.Status().Epochs }
	return append(cs,
		gauge("checkpoint_interval_seconds", "Epoch length of checkpoint replication.", func() float64 { return epochs().Interval.Seconds() }),
		counter("checkpoints_total", "Checkpoints this replica made as primary.", func() float64 { return float64(epochs().Made) }),
		counter("checkpoint_bytes_total", "Bytes of the checkpoints this replica made as primary.", func() float64 { return float64(epochs().Bytes) }),
		gauge("checkpoint_last_bytes", "Size of the last checkpoint.", func() float64 { return float64(epochs().LastBytes) }),
		counter("checkpoints_deferred_total", "Epoch closes put off because a backup lagged a full window.", func() float64 { return float64(epochs().Deferred) }),
	)
}

// roles are the roles the role gauge has a series for.
var roles = []Role{RoleNone, RoleJoining, RoleHead, RoleMiddle, RoleTail, RoleSingle, RolePrimary, RoleBackup}

// stateCollectors are what an alert reads: the role (one series per role,
// 1 for the current one, so a role change shows as two series moving),
// whether the node serves (/readyz), whether its lease is valid, and how
// many configurations it went through.
func (r *Replica) stateCollectors(gauge, counter func(string, string, func() float64) prometheus.Collector) []prometheus.Collector {
	cs := []prometheus.Collector{
		gauge("serving", "1 while the node serves clients (its /readyz is ok), else 0.", func() float64 { return boolFloat(r.Ready() == nil) }),
		gauge("lease_valid", "1 while the node's coordinator lease is valid, else 0.", func() float64 { return boolFloat(r.leaseValid()) }),
		counter("reconfigurations_total", "Configurations (failovers, joins, promotions, removals) this replica installed.", func() float64 { return float64(r.stats.configs.Load()) }),
	}
	for _, role := range roles {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "lockstep", Subsystem: "replica", Name: "role",
			Help:        "1 for the replica's role in its group (head, middle, tail, single, primary, backup, joining, none), 0 for the others.",
			ConstLabels: prometheus.Labels{"role": role.String()},
		}, func() float64 { return boolFloat(r.Role() == role) }))
	}
	return cs
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// histograms are the replica's latency distributions. Buckets run from
// 100 µs to about 3 s, doubling: a write's commit wait is an fsync or
// three and a few network hops, milliseconds when healthy, seconds when a
// member is slow or being replaced.
type histograms struct {
	commitWait prometheus.Histogram
	sync       prometheus.Histogram
}

func newHistograms() histograms {
	h := func(name, help string) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "lockstep", Subsystem: "replica", Name: name, Help: help,
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		})
	}
	return histograms{
		commitWait: h("commit_wait_seconds", "How long a write's reply (or a gated read's) waited for the commit point: replication to every replica that counts."),
		sync:       h("store_sync_seconds", "How long a sync of the store (an fsync of its log) took before the replica sent or acknowledged what it covers."),
	}
}
