package transport

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lockstep/lockstep/internal/proctest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// directory is the tests' name service: Resolve reads it, restarts update it.
type directory struct {
	mu    sync.Mutex
	addrs map[string]string
}

func newDirectory() *directory { return &directory{addrs: make(map[string]string)} }

func (d *directory) resolve(name string) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	addr, ok := d.addrs[name]
	return addr, ok
}

func (d *directory) set(name, addr string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.addrs[name] = addr
}

// logBuffer collects a node's log lines so that tests can look for an event.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Contains(l.buf.Bytes(), []byte(s))
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// node is a Transport under test with its captured log.
type node struct {
	*Transport
	log *logBuffer
}

// startNode listens on a free loopback port, registers the address in dir
// and closes the Transport when the test ends. mod may adjust the Config.
func startNode(t testing.TB, dir *directory, name string, mod func(*Config)) *node {
	t.Helper()
	logs := &logBuffer{}
	cfg := Config{
		Name:      name,
		ClusterID: "test",
		Listen:    "127.0.0.1:0",
		Resolve:   dir.resolve,
		Logger:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	tr, err := Listen(cfg)
	if err != nil {
		t.Fatalf("Listen(%s): %v", name, err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("Close(%s): %v", name, err)
		}
	})
	dir.set(name, tr.Addr())
	return &node{Transport: tr, log: logs}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	proctest.Eventually(t, timeout, what, cond)
}

// recorder is a Handler that keeps copies of what it receives.
type recorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) handle(from string, payload []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, from+":"+string(payload))
}

func (r *recorder) has(msg string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.msgs {
		if m == msg {
			return true
		}
	}
	return false
}

func (r *recorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}
