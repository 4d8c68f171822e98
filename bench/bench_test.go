package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lockstep/lockstep/internal/proctest"
)

var seedFlag = flag.Int64("seed", 1, "seed for the load generator in these tests")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testConfig is a small, fast run against addr.
func testConfig(t *testing.T, addr string) Config {
	t.Logf("seed %d (replay with -seed %d)", *seedFlag, *seedFlag)
	cfg := DefaultConfig()
	cfg.Addr = addr
	cfg.Clients = 4
	cfg.Keys = 1000
	cfg.ValueSize = 17
	cfg.Requests = 2000
	cfg.Seed = *seedFlag
	return cfg
}

func newFake(t *testing.T, cfg Config) *fakeServer {
	return &fakeServer{t: t, maxKey: cfg.Keys, valueSize: cfg.ValueSize}
}

func run(t *testing.T, cfg Config) (Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return Run(ctx, cfg, nil)
}

func TestRequestsStopExactly(t *testing.T) {
	for _, tc := range []struct{ clients, pipeline int }{{1, 1}, {7, 3}, {5, 16}} {
		cfg := testConfig(t, "")
		srv := newFake(t, cfg)
		cfg.Addr = srv.start()
		cfg.Clients, cfg.Pipeline, cfg.Requests = tc.clients, tc.pipeline, 1001
		res, err := run(t, cfg)
		if err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		served := srv.gets.Load() + srv.sets.Load() + srv.others.Load()
		if res.Ops != 1001 || served != 1001 {
			t.Errorf("%+v: result ops %d, server saw %d, want exactly 1001", tc, res.Ops, served)
		}
		if res.Get.Ops+res.Set.Ops != res.Ops || res.Errors != 0 {
			t.Errorf("%+v: get %d + set %d != %d, errors %d", tc, res.Get.Ops, res.Set.Ops, res.Ops, res.Errors)
		}
		if srv.badKeys.Load() != 0 || srv.badValues.Load() != 0 || srv.others.Load() != 0 {
			t.Errorf("%+v: bad keys %d, bad values %d, other commands %d",
				tc, srv.badKeys.Load(), srv.badValues.Load(), srv.others.Load())
		}
	}
}

// TestWaitReplicas checks that --wait follows every SET with WAIT n 0,
// counts the pair as one SET, and counts too few acknowledgements as an
// error.
func TestWaitReplicas(t *testing.T) {
	for _, tc := range []struct{ acks, wantErrs int }{{0, 0}, {1, 1}} {
		cfg := testConfig(t, "")
		srv := newFake(t, cfg)
		srv.waitAcks = tc.acks
		cfg.Addr = srv.start()
		cfg.Clients, cfg.Pipeline, cfg.Requests, cfg.WaitReplicas = 3, 4, 400, 2
		cfg.GetRatio, cfg.SetRatio = 0, 1
		res, err := run(t, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if res.Set.Ops != 400 || srv.sets.Load() != 400 || srv.waits.Load() != 400 {
			t.Fatalf("acks %d: %d SETs counted, server saw %d SETs and %d WAITs, want 400 each",
				tc.acks, res.Set.Ops, srv.sets.Load(), srv.waits.Load())
		}
		if want := int64(tc.wantErrs * 400); res.Errors != want {
			t.Fatalf("acks %d: %d errors, want %d", tc.acks, res.Errors, want)
		}
	}
}

func TestRatio(t *testing.T) {
	for _, tc := range []struct{ get, set int }{{9, 1}, {1, 1}, {0, 1}, {1, 0}} {
		cfg := testConfig(t, "")
		srv := newFake(t, cfg)
		cfg.Addr = srv.start()
		cfg.GetRatio, cfg.SetRatio, cfg.Requests = tc.get, tc.set, 10000
		res, err := run(t, cfg)
		if err != nil {
			t.Fatal(err)
		}
		wantGets := 10000 * tc.get / (tc.get + tc.set)
		if diff := srv.gets.Load() - int64(wantGets); diff < -300 || diff > 300 {
			t.Errorf("ratio %d:%d: server saw %d GETs, want about %d", tc.get, tc.set, srv.gets.Load(), wantGets)
		}
		if res.Get.Ops != srv.gets.Load() || res.Set.Ops != srv.sets.Load() {
			t.Errorf("ratio %d:%d: result %d/%d, server %d/%d", tc.get, tc.set,
				res.Get.Ops, res.Set.Ops, srv.gets.Load(), srv.sets.Load())
		}
		if (tc.get == 0 && srv.gets.Load() != 0) || (tc.set == 0 && srv.sets.Load() != 0) {
			t.Errorf("ratio %d:%d sent a zero-weight command", tc.get, tc.set)
		}
	}
}

// TestPipeline uses a server that answers only once it holds a whole
// batch: a client that waited after each request would hang.
func TestPipeline(t *testing.T) {
	cfg := testConfig(t, "")
	srv := newFake(t, cfg)
	srv.batch = 8
	cfg.Addr = srv.start()
	cfg.Pipeline, cfg.Requests = 8, 8*300
	res, err := run(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops != 2400 {
		t.Fatalf("ops %d, want 2400", res.Ops)
	}
	if res.Latency.P50 > res.Latency.P99 || res.Latency.P99 > res.Latency.Max || res.Latency.Mean <= 0 {
		t.Errorf("inconsistent latency %+v", res.Latency)
	}
}

func TestErrorReplies(t *testing.T) {
	cfg := testConfig(t, "")
	srv := newFake(t, cfg)
	srv.failCmd = "SET"
	cfg.Addr = srv.start()
	res, err := run(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != srv.sets.Load() || res.Set.Errors != res.Set.Ops || res.Get.Errors != 0 {
		t.Errorf("errors %d (set %d of %d, get %d), server saw %d SETs",
			res.Errors, res.Set.Errors, res.Set.Ops, res.Get.Errors, srv.sets.Load())
	}
	if len(res.ErrorSamples) != 1 || res.ErrorSamples[0] != "ERR injected failure" {
		t.Errorf("error samples %q", res.ErrorSamples)
	}
}

func TestDuration(t *testing.T) {
	cfg := testConfig(t, "")
	srv := newFake(t, cfg)
	cfg.Addr = srv.start()
	cfg.Requests, cfg.Duration, cfg.Warmup = 0, 300*time.Millisecond, 100*time.Millisecond
	cfg.ProgressInterval = 50 * time.Millisecond
	var progress bytes.Buffer
	start := time.Now()
	res, err := Run(context.Background(), cfg, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 400*time.Millisecond || took > 5*time.Second {
		t.Errorf("run took %s, want about 400ms", took)
	}
	if res.DurationS < 0.3 || res.DurationS > 1 {
		t.Errorf("measured %.3fs, want about 0.3s", res.DurationS)
	}
	served := srv.gets.Load() + srv.sets.Load()
	if res.Ops == 0 || res.Ops >= served {
		t.Errorf("measured %d ops of %d served; warmup should be served but not counted", res.Ops, served)
	}
	if !strings.Contains(progress.String(), "warming up") || !strings.Contains(progress.String(), "ops/s") {
		t.Errorf("progress output %q", progress.String())
	}
}

func TestInterrupt(t *testing.T) {
	cfg := testConfig(t, "")
	srv := newFake(t, cfg)
	cfg.Addr = srv.start()
	cfg.Requests, cfg.Duration = 0, time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	type outcome struct {
		res Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := Run(ctx, cfg, nil)
		done <- outcome{res, err}
	}()
	proctest.Eventually(t, 10*time.Second, "500 requests served", func() bool {
		return srv.gets.Load()+srv.sets.Load() > 500
	})
	cancel()
	out := <-done
	res, err := out.res, out.err
	if err != nil {
		t.Fatal(err)
	}
	// The server saw over 500 requests before the interrupt; the replies
	// to those still in flight may be lost with the run, so the result
	// counts some, but never more than were served.
	served := srv.gets.Load() + srv.sets.Load()
	if !res.Interrupted || res.Ops == 0 || res.Ops > served || res.DurationS <= 0 || res.OpsPerSec <= 0 {
		t.Errorf("interrupted %v, ops %d (served %d), duration %.3f, ops/s %.1f",
			res.Interrupted, res.Ops, served, res.DurationS, res.OpsPerSec)
	}
}

func TestServerDiesMidRun(t *testing.T) {
	cfg := testConfig(t, "")
	srv := newFake(t, cfg)
	srv.dieAfter = 1000
	cfg.Addr = srv.start()
	cfg.Requests, cfg.Duration = 0, time.Hour
	res, err := run(t, cfg)
	if !errors.Is(err, ErrConnLost) {
		t.Fatalf("error %v, want ErrConnLost", err)
	}
	if res.Ops == 0 || res.Ops > 1000 || res.Error == "" {
		t.Errorf("ops %d (want 1..1000), error text %q", res.Ops, res.Error)
	}
}

func TestStalledServer(t *testing.T) {
	cfg := testConfig(t, "")
	srv := newFake(t, cfg)
	srv.stall = true
	cfg.Addr = srv.start()
	cfg.Requests, cfg.Duration = 0, 100*time.Millisecond
	cfg.stopGrace = 200 * time.Millisecond
	res, err := run(t, cfg)
	if !errors.Is(err, ErrTimeout) || res.Ops != 0 {
		t.Fatalf("error %v, ops %d; want ErrTimeout and no ops", err, res.Ops)
	}
}

func TestConnectFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	_, err = run(t, testConfig(t, addr))
	if !errors.Is(err, ErrConnect) || !strings.Contains(err.Error(), "cannot connect to "+addr+": ") {
		t.Fatalf("error %v, want ErrConnect naming %s", err, addr)
	}
}

func TestAuth(t *testing.T) {
	cfg := testConfig(t, "")
	srv := newFake(t, cfg)
	srv.password = "s3cret"
	cfg.Addr = srv.start()
	cfg.Password = "s3cret"
	res, err := run(t, cfg)
	if err != nil || res.Errors != 0 || srv.auths.Load() != int64(cfg.Clients) {
		t.Fatalf("error %v, %d error replies, %d AUTHs for %d clients",
			err, res.Errors, srv.auths.Load(), cfg.Clients)
	}
	cfg.Password = "wrong"
	if _, err := run(t, cfg); !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("error %v, want ErrAuth with the server's reply", err)
	}
}

func TestJSONShape(t *testing.T) {
	cfg := testConfig(t, "")
	srv := newFake(t, cfg)
	cfg.Addr = srv.start()
	res, err := run(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"addr", "clients", "pipeline", "duration_s", "ops", "errors", "ops_per_sec", "latency_us", "get", "set"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON %s lacks %q", b, k)
		}
	}
	for _, part := range []any{m["latency_us"], m["get"].(map[string]any)["latency_us"]} {
		lat := part.(map[string]any)
		for _, k := range []string{"p50", "p99", "p999", "max", "mean"} {
			if _, ok := lat[k]; !ok {
				t.Errorf("latency %v lacks %q", lat, k)
			}
		}
	}
	var out bytes.Buffer
	if err := WriteSummary(&out, res); err != nil || !strings.Contains(out.String(), "p99.9") {
		t.Errorf("summary %q, error %v", out.String(), err)
	}
}

// TestSeedReplays checks that one client's request sequence depends only on
// the seed: the same seed twice makes the server see the same keys.
func TestSeedReplays(t *testing.T) {
	keys := func() string {
		cfg := testConfig(t, "")
		cfg.Clients, cfg.Requests = 1, 50
		var got []string
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			got = recordKeys(ln, 50)
		}()
		cfg.Addr = ln.Addr().String()
		if _, err := run(t, cfg); err != nil {
			t.Fatal(err)
		}
		<-done
		return strings.Join(got, ",")
	}
	a, b := keys(), keys()
	if a != b || a == "" {
		t.Errorf("same seed gave different key sequences:\n%s\n%s", a, b)
	}
}
