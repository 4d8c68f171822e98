package coord

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// startEtcd starts an embedded etcd for one test and stops it at cleanup.
func startEtcd(t *testing.T) *Embedded {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e, err := StartEmbedded(ctx, EmbeddedConfig{Dir: t.TempDir(), Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

// dial returns a client of e closed at cleanup (before e, which was
// started earlier and so is stopped later).
func dial(t *testing.T, e *Embedded) *clientv3.Client {
	t.Helper()
	cli, err := Dial(e.Endpoints(), testLogger(t))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// testLogger shows warnings and errors on stderr when LOCKSTEP_TEST_LOG is
// set, and discards everything otherwise.
func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("LOCKSTEP_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name())
}

// clusterName turns the test's name into a cluster name (no '/').
func clusterName(t *testing.T) string {
	return strings.ReplaceAll(t.Name(), "/", "_")
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestEmbeddedServes(t *testing.T) {
	start := time.Now()
	e := startEtcd(t)
	t.Logf("embedded etcd ready in %v at %v", time.Since(start), e.Endpoints())
	cli := dial(t, e)
	ctx := testCtx(t)
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}
	resp, err := cli.Get(ctx, "k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("get = %v, %v; want v", resp, err)
	}
}

func TestEmbeddedPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer l.Close()
	ctx := testCtx(t)
	_, err = StartEmbedded(ctx, EmbeddedConfig{Dir: t.TempDir(), ClientURL: "http://" + l.Addr().String()})
	if err == nil || !isAddrInUse(err) {
		t.Fatalf("StartEmbedded on a taken port = %v, want an address-in-use error", err)
	}
}
