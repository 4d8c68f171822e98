package coord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap/zapcore"
)

// EmbeddedConfig configures a single-member etcd run inside the process.
type EmbeddedConfig struct {
	// Dir holds etcd's data. If empty, a temporary directory is created and
	// removed by Close (fine for tests, useless for durability).
	Dir string
	// Name is the etcd member name; "default" if empty.
	Name string
	// ClientURL and PeerURL are where etcd listens, e.g.
	// "http://127.0.0.1:2379". If empty, a free 127.0.0.1 port is picked.
	ClientURL, PeerURL string
	// Logger receives etcd's own error-level logs. Nil discards them.
	Logger *slog.Logger
}

// Embedded is a running in-process etcd member. It is what `lockstep up` and
// the tests use; production points nodes at an external etcd cluster.
type Embedded struct {
	etcd      *embed.Etcd
	endpoints []string
	tmpDir    string
	peerURL   string
}

// embeddedStartAttempts bounds retries when a probed free port is taken by
// someone else between the probe and etcd's bind.
const embeddedStartAttempts = 3

// StartEmbedded starts a single-member etcd and waits until it serves
// requests or ctx ends.
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.Name == "" {
		cfg.Name = "default"
	}
	e := &Embedded{}
	if cfg.Dir == "" {
		dir, err := os.MkdirTemp("", "lockstep-etcd-")
		if err != nil {
			return nil, fmt.Errorf("coord: embedded etcd dir: %w", err)
		}
		e.tmpDir, cfg.Dir = dir, dir
	}
	var err error
	for attempt := 0; attempt < embeddedStartAttempts; attempt++ {
		err = e.start(ctx, cfg)
		if err == nil || !isAddrInUse(err) || (cfg.ClientURL != "" && cfg.PeerURL != "") {
			break
		}
	}
	if err != nil {
		e.removeTmp()
		return nil, err
	}
	return e, nil
}

// start makes one attempt at starting etcd with cfg.
func (e *Embedded) start(ctx context.Context, cfg EmbeddedConfig) error {
	ec, err := embedConfig(cfg)
	if err != nil {
		return err
	}
	etcd, err := embed.StartEtcd(ec)
	if err != nil {
		return fmt.Errorf("coord: start embedded etcd: %w", err)
	}
	select {
	case <-etcd.Server.ReadyNotify():
	case err := <-etcd.Err():
		etcd.Close()
		return fmt.Errorf("coord: embedded etcd failed: %w", err)
	case <-ctx.Done():
		etcd.Close()
		return fmt.Errorf("coord: embedded etcd not ready: %w", ctx.Err())
	}
	e.etcd = etcd
	e.endpoints = nil
	for _, u := range ec.AdvertiseClientUrls {
		e.endpoints = append(e.endpoints, u.String())
	}
	e.peerURL = ec.AdvertisePeerUrls[0].String()
	return nil
}

// embedConfig translates cfg into etcd's configuration. Heartbeat and
// election timeout are shortened: with one member they only delay startup,
// and etcd's minimum lease TTL is 1.5 election timeouts rounded up to whole
// seconds, so the defaults (100 ms / 1 s) would silently turn a 1 s lease
// into 2 s.
func embedConfig(cfg EmbeddedConfig) (*embed.Config, error) {
	clientURL, err := urlOrFree(cfg.ClientURL)
	if err != nil {
		return nil, err
	}
	peerURL, err := urlOrFree(cfg.PeerURL)
	if err != nil {
		return nil, err
	}
	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = cfg.Dir
	ec.ListenClientUrls = []url.URL{*clientURL}
	ec.AdvertiseClientUrls = []url.URL{*clientURL}
	ec.ListenPeerUrls = []url.URL{*peerURL}
	ec.AdvertisePeerUrls = []url.URL{*peerURL}
	ec.InitialCluster = ec.InitialClusterFromName(cfg.Name)
	ec.TickMs = 50
	ec.ElectionMs = 500
	// Status updates rewrite nodes/<name> often; keep history bounded.
	ec.AutoCompactionMode = "periodic"
	ec.AutoCompactionRetention = "10m"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zapToSlog(componentLogger(cfg.Logger), zapcore.ErrorLevel))
	return ec, nil
}

// componentLogger tags etcd's records so they can be told apart.
func componentLogger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return nil
	}
	return l.With("component", "etcd")
}

// urlOrFree parses raw, or returns http://127.0.0.1:<free port> if raw is
// empty. The port is probed by listening on :0 and closing, so another
// process can take it before etcd binds; StartEmbedded retries that case.
func urlOrFree(raw string) (*url.URL, error) {
	if raw != "" {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: etcd url %q: %v", ErrInvalid, raw, err)
		}
		return u, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("coord: probe free port: %w", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return nil, fmt.Errorf("coord: probe free port: %w", err)
	}
	return &url.URL{Scheme: "http", Host: addr}, nil
}

func isAddrInUse(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "listen"
}

// Endpoints returns the client URLs to give to Dial or clientv3.New.
func (e *Embedded) Endpoints() []string { return append([]string(nil), e.endpoints...) }

// PeerURL returns the URL etcd listens on for peers, which a restart on the
// same directory should use again.
func (e *Embedded) PeerURL() string { return e.peerURL }

// Close stops etcd and waits for it to shut down; a temporary data directory
// is removed. Close clients first: etcd waits (up to its request timeout) for
// open streams such as watches to finish.
func (e *Embedded) Close() {
	e.etcd.Close()
	e.removeTmp()
}

func (e *Embedded) removeTmp() {
	if e.tmpDir != "" {
		_ = os.RemoveAll(e.tmpDir)
	}
}
