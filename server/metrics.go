package server

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the front end's Prometheus series. Counters are resolved per
// command once, at startup, so the hot path only does an atomic add.
type Metrics struct {
	connected prometheus.Gauge
	commands  *prometheus.CounterVec
}

// NewMetrics registers the front end's series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lockstep_connected_clients",
			Help: "Client connections currently open.",
		}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockstep_commands_total",
			Help: "Commands executed, by command name.",
		}, []string{"command"}),
	}
	reg.MustRegister(m.connected, m.commands)
	return m
}

// commandCounter returns the counter for one command; nil Metrics count
// nothing.
func (m *Metrics) commandCounter(name string) counter {
	if m == nil {
		return noCounter{}
	}
	return m.commands.WithLabelValues(name)
}
