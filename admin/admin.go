// Package admin serves a node's operator endpoints over HTTP: Prometheus
// metrics, health and readiness checks and Go's profiler. It listens on its own address
// so that scraping and profiling never compete with the client port.
package admin

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Health reports nil while a check passes, or why it does not.
type Health func() error

// Checks are what /healthz and /readyz report: Health, whether the
// process works at all (a supervisor restarts it when not); Ready,
// whether it serves clients now (a load balancer sends it traffic only
// then). A nil Ready is Health.
type Checks struct {
	Health Health
	Ready  Health
}

// Server is the admin HTTP endpoint.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Listen binds addr and prepares the handlers; call Serve to start.
func Listen(addr string, gather prometheus.Gatherer, checks Checks) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if checks.Ready == nil {
		checks.Ready = checks.Health
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(gather, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", checkHandler(checks.Health))
	mux.HandleFunc("/readyz", checkHandler(checks.Ready))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return &Server{srv: srv, ln: ln}, nil
}

// checkHandler answers 200 "ok" while check passes, else 503 with why.
func checkHandler(check Health) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if err := check(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	}
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve runs until Shutdown; it returns nil after a clean shutdown.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops the endpoint, waiting for requests in flight until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
