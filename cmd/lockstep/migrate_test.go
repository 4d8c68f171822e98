package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockstep/lockstep/internal/faultproxy"
	"github.com/lockstep/lockstep/internal/proctest"
	"github.com/lockstep/lockstep/kv"
	"github.com/lockstep/lockstep/node"
	"github.com/lockstep/lockstep/server"
	"github.com/lockstep/lockstep/storage"
)

// TestMigrateExpireAt checks how a PTTL reply becomes a deadline: counted
// from when the read was sent, none for -1, gone for -2.
func TestMigrateExpireAt(t *testing.T) {
	sent := time.UnixMilli(1_700_000_000_000)
	for _, tc := range []struct {
		pttl     int64
		wantAt   int64
		wantGone bool
	}{
		{-2, 0, true},
		{-1, 0, false},
		{0, 1_700_000_000_000, false},
		{1500, 1_700_000_001_500, false},
		{3_600_000, 1_700_003_600_000, false},
	} {
		at, gone := expireAtMillis(sent, tc.pttl)
		if at != tc.wantAt || gone != tc.wantGone {
			t.Errorf("expireAtMillis(pttl %d) = %d, %v; want %d, %v", tc.pttl, at, gone, tc.wantAt, tc.wantGone)
		}
	}
}

// TestMigrateSetArgs checks the SET that copies a key: PXAT only with a
// TTL, NX unless replacing.
func TestMigrateSetArgs(t *testing.T) {
	for _, tc := range []struct {
		e       migrateEntry
		replace bool
		want    string
	}{
		{migrateEntry{key: "k", value: "v"}, false, "set k v nx"},
		{migrateEntry{key: "k", value: "v"}, true, "set k v"},
		{migrateEntry{key: "k", value: "v", expireAt: 1234}, false, "set k v pxat 1234 nx"},
		{migrateEntry{key: "k", value: "", expireAt: 1234}, true, "set k  pxat 1234"},
	} {
		if got := strings.TrimSpace(fmt.Sprintln(setArgs(tc.e, tc.replace)...)); got != tc.want {
			t.Errorf("setArgs(%+v, replace %v) = %q, want %q", tc.e, tc.replace, got, tc.want)
		}
	}
}

// TestMigrateRetryable checks which write errors are sent again: no reply
// at all, and lockstep's "not now" replies; not a definite refusal, and
// not SET NX's nil.
func TestMigrateRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{redis.Nil, false},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, true},
		{io.EOF, true},
		{context.DeadlineExceeded, true},
		{redisErr("TRYAGAIN lockstep: not the head"), true},
		{redisErr("ERR lockstep: replica not serving: replication window full"), true},
		{redisErr("LOADING Redis is loading the dataset in memory"), true},
		{redisErr("ERR syntax error"), false},
		{redisErr("ERR string exceeds maximum allowed size (proto-max-bulk-len)"), false},
		{redisErr("NOAUTH Authentication required."), false},
	} {
		if got := retryableWrite(tc.err); got != tc.want {
			t.Errorf("retryableWrite(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{io.EOF, true},
		{context.DeadlineExceeded, true},
		{redisErr("ERR lockstep: write outcome unknown after reconfiguration"), true},
		{redisErr("TRYAGAIN lockstep: not the head"), false},
		{redisErr("ERR lockstep: replica not serving"), false},
	} {
		if got := mayHaveApplied(tc.err); got != tc.want {
			t.Errorf("mayHaveApplied(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// redisErr is an error reply as go-redis reports it.
type redisErr string

func (e redisErr) Error() string { return string(e) }
func (redisErr) RedisError()     {}

// TestMigrateReadSecret checks that a password file wins over the
// environment and loses its line end, and that a missing file is an error.
func TestMigrateReadSecret(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte("s3 cret\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := readSecret(file, "from-env"); err != nil || got != "s3 cret" {
		t.Errorf("readSecret(file) = %q, %v; want %q", got, err, "s3 cret")
	}
	if got, err := readSecret("", "from-env"); err != nil || got != "from-env" {
		t.Errorf("readSecret(no file) = %q, %v; want the environment's", got, err)
	}
	if _, err := readSecret(filepath.Join(dir, "missing"), "from-env"); err == nil {
		t.Error("readSecret(missing file) succeeded")
	}
}

// TestMigrateSummary checks the outcome word, the summary line and the
// reasons a migration is incomplete: unsupported types only without
// --skip-unsupported, conflicts and refused writes always.
func TestMigrateSummary(t *testing.T) {
	c := migrateCounts{Scanned: 10, Copied: 6, Same: 1, Expired: 1,
		Unsupported: map[string]int64{"list": 1, "hash": 1}, UnsupportedKeys: []string{"q (list)", "h (hash)"}}
	if got := migrateOutcome(c, false, nil); got != "incomplete" {
		t.Errorf("outcome with unsupported keys = %q, want incomplete", got)
	}
	if got := migrateOutcome(c, true, nil); got != "complete" {
		t.Errorf("outcome with --skip-unsupported = %q, want complete", got)
	}
	if got := migrateOutcome(c, true, fmt.Errorf("%w: x", errMigrateInterrupted)); got != "interrupted" {
		t.Errorf("outcome when interrupted = %q", got)
	}
	var b bytes.Buffer
	if err := writeMigrateSummary(&b, c, "incomplete", 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	want := "migrate incomplete in 1.5s: 10 keys scanned, 6 copied, 1 already present, 0 conflicts, 1 expired, 2 unsupported (hash 1, list 1), 0 failed\n"
	if b.String() != want {
		t.Errorf("summary = %q\nwant      %q", b.String(), want)
	}
	why := incompleteReasons(c, false)
	if len(why) != 1 || !strings.Contains(why[0], "hash 1, list 1") || !strings.Contains(why[0], "q (list), h (hash)") {
		t.Errorf("reasons = %q, want one naming the types and keys", why)
	}
	c.Conflicts, c.ConflictKeys, c.Failed, c.FailedKeys = 1, []string{"k"}, 1, []string{"big: ERR too large"}
	if why := incompleteReasons(c, true); len(why) != 2 || !strings.Contains(why[0], "--replace") || !strings.Contains(why[1], "big: ERR too large") {
		t.Errorf("reasons = %q, want a conflict and a refused write", why)
	}
}

// TestMigrateBackoff checks the pauses between attempts without progress:
// none after progress, then doubling from the base up to 20 times it.
func TestMigrateBackoff(t *testing.T) {
	base := 100 * time.Millisecond
	want := []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond,
		800 * time.Millisecond, 1600 * time.Millisecond, 2 * time.Second, 2 * time.Second}
	for stalled, w := range want {
		if got := writeBackoff(base, stalled); got != w {
			t.Errorf("writeBackoff(%v, %d) = %v, want %v", base, stalled, got, w)
		}
	}
	if got := writeBackoff(base, 1000); got != 2*time.Second {
		t.Errorf("writeBackoff(%v, 1000) = %v, want the 2s cap", base, got)
	}
}

// TestMigrateSample checks that the summary keeps the first few names only.
func TestMigrateSample(t *testing.T) {
	var list []string
	for i := range 2 * migrateSamples {
		list = sample(list, strconv.Itoa(i))
	}
	if len(list) != migrateSamples || list[0] != "0" {
		t.Errorf("sample kept %q", list)
	}
}

// TestMigrateWritesThroughLostReplies writes through a proxy that drops
// requests and, worse, replies after lockstep applied the write (a drop
// mid-pipeline loses the replies of every write the server already ran).
// Every key must arrive, and on a fresh target every key must count as
// copied: a write of this run retried after its reply was lost must not
// pass for a key that was already there, or for a conflict. A second pass
// over the same keys finds them all in place.
func TestMigrateWritesThroughLostReplies(t *testing.T) {
	addr := startTestServer(t)
	seed := migrateSeed(t)
	proxy, err := faultproxy.Start(context.Background(), faultproxy.Options{Target: addr, DropRequest: 0.002, DropReply: 0.002, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	now := time.Now()
	var entries []migrateEntry
	for i := range 2000 {
		e := migrateEntry{key: fmt.Sprintf("k%04d", i), value: fmt.Sprintf("v%d", i)}
		if i%2 == 0 {
			e.expireAt = now.Add(time.Hour).UnixMilli()
		}
		entries = append(entries, e)
	}
	expired := migrateEntry{key: "gone", value: "x", expireAt: now.Add(-time.Second).UnixMilli()}

	for pass := range 2 {
		m := testMigrator(t, proxy.Addr(), migrateOptions{batch: 100, retries: 20})
		for chunk := range slices.Chunk(append(slices.Clone(entries), expired), 100) {
			if err := m.writeBatch(ctx, slices.Clone(chunk)); err != nil {
				t.Fatalf("pass %d: %v (seed %d)", pass, err, seed)
			}
		}
		got := m.tally.snapshot()
		if got.Copied+got.Same != 2000 || (pass == 0 && got.Copied != 2000) || got.Conflicts != 0 || got.Expired != 1 || got.Failed != 0 {
			t.Fatalf("pass %d: counts %+v (seed %d)", pass, got, seed)
		}
	}
	st := proxy.Stats()
	t.Logf("proxy: %d forwarded, %d requests and %d replies dropped", st.Forwarded, st.RequestsDropped, st.RepliesDropped)
	if st.RequestsDropped+st.RepliesDropped == 0 {
		t.Fatalf("the proxy dropped nothing, so the test tested nothing (seed %d)", seed)
	}
	checkStored(t, ctx, addr, entries)
}

// TestMigrateConflicts checks the default, safe handling of keys lockstep
// already holds: the same value counts as present, another value is a
// conflict left untouched; --replace overwrites it and sets the TTL.
func TestMigrateConflicts(t *testing.T) {
	addr := startTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	for k, v := range map[string]string{"same": "v", "other": "theirs"} {
		if err := c.Set(ctx, k, v, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Now().Add(time.Hour).UnixMilli()
	entries := []migrateEntry{{key: "same", value: "v"}, {key: "other", value: "ours", expireAt: at}, {key: "new", value: "n"}}

	m := testMigrator(t, addr, migrateOptions{batch: 10})
	if err := m.writeBatch(ctx, slices.Clone(entries)); err != nil {
		t.Fatal(err)
	}
	got := m.tally.snapshot()
	if got.Copied != 1 || got.Same != 1 || got.Conflicts != 1 || !slices.Equal(got.ConflictKeys, []string{"other"}) {
		t.Fatalf("without --replace: %+v", got)
	}
	if v := c.Get(ctx, "other").Val(); v != "theirs" {
		t.Fatalf("conflicting key overwritten without --replace: %q", v)
	}

	m = testMigrator(t, addr, migrateOptions{batch: 10, replace: true})
	if err := m.writeBatch(ctx, slices.Clone(entries)); err != nil {
		t.Fatal(err)
	}
	if got := m.tally.snapshot(); got.Copied != 3 || got.Conflicts != 0 {
		t.Fatalf("with --replace: %+v", got)
	}
	checkStored(t, ctx, addr, entries)
}

// TestMigrateGivesUp checks that writes to a lockstep that cannot be
// reached end the migration with errMigrateTarget after the bounded
// retries, rather than hanging or counting the keys as copied.
func TestMigrateGivesUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	m := testMigrator(t, addr, migrateOptions{batch: 10, retries: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = m.writeBatch(ctx, []migrateEntry{{key: "k", value: "v"}})
	if !errors.Is(err, errMigrateTarget) {
		t.Fatalf("writeBatch to nowhere = %v, want errMigrateTarget", err)
	}
	if got := m.tally.snapshot(); got.Copied != 0 {
		t.Fatalf("counted %d copied with nothing to copy to", got.Copied)
	}
}

// startTestServer runs a standalone lockstep server in this process, on a
// port the OS picks, and returns its address.
func startTestServer(t *testing.T) string {
	t.Helper()
	store := storage.NewMemory()
	n, err := node.New(node.Config{Machine: kv.New(store, kv.Options{}), Store: store})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Backend: n})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-served
		_ = n.Close()
	})
	return ln.Addr().String()
}

// quietRedis silences go-redis's dial failure logs once: its logger is a
// global that its goroutines read.
var quietRedis sync.Once

// testMigrator builds a migrator that writes to addr, as runMigrate
// would, with no source.
func testMigrator(t *testing.T, addr string, opts migrateOptions) *migrator {
	t.Helper()
	quietRedis.Do(func() { redis.SetLogger(redisLogger{slog.New(slog.DiscardHandler)}) })
	dst := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 2, DialTimeout: time.Second, DialerRetries: 1})
	t.Cleanup(func() { dst.Close() })
	opts.backoff = time.Millisecond // the faults are injected, no need to wait them out
	return &migrator{dst: dst, opts: opts, tally: &migrateTally{}, now: time.Now, log: slog.New(slog.DiscardHandler)}
}

// checkStored reads every entry back from addr: the value, and a TTL when
// and only when the entry has one.
func checkStored(t *testing.T, ctx context.Context, addr string, entries []migrateEntry) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	for _, e := range entries {
		v, err := c.Get(ctx, e.key).Result()
		if err != nil || v != e.value {
			t.Fatalf("GET %s = %q, %v; want %q", e.key, v, err, e.value)
		}
		pttl, err := c.Do(ctx, "pttl", e.key).Int64()
		if err != nil {
			t.Fatal(err)
		}
		if (e.expireAt == 0) != (pttl == -1) {
			t.Fatalf("PTTL %s = %d, want a TTL: %v", e.key, pttl, e.expireAt != 0)
		}
	}
}

// migrateSeed returns the seed of the fault proxy: LOCKSTEP_SEED if set,
// else one from the clock, logged with the command that replays it.
func migrateSeed(t *testing.T) uint64 { return proctest.Seed(t, "./cmd/lockstep/") }

// TestMigrateAuthHint checks that a refused login points at where the
// password is read from, and that other errors get no hint.
func TestMigrateAuthHint(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{redisErr("NOAUTH Authentication required."), true},
		{redisErr("WRONGPASS invalid username-password pair or user is disabled."), true},
		{redisErr("ERR DB index is out of range"), false},
		{io.EOF, false},
	} {
		got := authHint(tc.err, "--from-password-file", envMigrateFromPassword)
		if (got != "") != tc.want || (tc.want && !strings.Contains(got, envMigrateFromPassword)) {
			t.Errorf("authHint(%v) = %q", tc.err, got)
		}
	}
}
