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
