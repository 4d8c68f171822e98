package admin

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestReadyzApartFromHealthz: /healthz follows Health and /readyz follows
// Ready, each 200 "ok" or 503 with the reason.
func TestReadyzApartFromHealthz(t *testing.T) {
	var ready atomic.Bool
	s, err := Listen("127.0.0.1:0", prometheus.NewRegistry(), Checks{
		Health: func() error { return nil },
		Ready: func() error {
			if !ready.Load() {
				return errors.New("joining: not a member yet")
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve() }()
	t.Cleanup(func() { _ = s.Shutdown(t.Context()) })
	get := func(path string) (int, string) {
		t.Helper()
		res, err := http.Get("http://" + s.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz = %d %q, want 200 ok", code, body)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "not a member") {
		t.Fatalf("/readyz = %d %q, want 503 with the reason", code, body)
	}
	ready.Store(true)
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("/readyz once ready = %d, want 200", code)
	}
}
