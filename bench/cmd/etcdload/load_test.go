package main

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// fakeEtcd records Puts in memory; every failEvery-th Put fails.
type fakeEtcd struct {
	mu        sync.Mutex
	puts      int
	failEvery int
	keys      map[string]int
}

func (f *fakeEtcd) Put(_ context.Context, key, val string, _ ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	time.Sleep(100 * time.Microsecond) // a Put's latency, so writers overlap: the point of the fake
	f.mu.Lock()
	defer f.mu.Unlock()
	f.puts++
	if f.keys == nil {
		f.keys = map[string]int{}
	}
	f.keys[key] = len(val)
	if f.failEvery > 0 && f.puts%f.failEvery == 0 {
		return nil, errors.New("etcdserver: too many requests")
	}
	return &clientv3.PutResponse{}, nil
}

func TestLoadCountsPutsErrorsAndLatency(t *testing.T) {
	fake := &fakeEtcd{failEvery: 10}
	cfg := config{Addr: "fake", Clients: 4, Keys: 50, ValueSize: 7, Duration: 200 * time.Millisecond,
		Warmup: 20 * time.Millisecond, Seed: 1}
	res := load(context.Background(), cfg, []putter{fake, fake, fake, fake})

	if res.Set.Ops == 0 || res.Set.OpsPerSec <= 0 {
		t.Fatalf("no Puts counted: %+v", res.Set)
	}
	if res.Set.Errors == 0 || len(res.ErrorSamples) == 0 || !strings.Contains(res.ErrorSamples[0], "too many") {
		t.Errorf("failed Puts not counted: errors %d, samples %q", res.Set.Errors, res.ErrorSamples)
	}
	if int(res.Set.Ops) > fake.puts {
		t.Errorf("counted %d Puts, the server saw only %d (warm-up included)", res.Set.Ops, fake.puts)
	}
	l := res.Set.Latency
	if l.P50 < 100 || l.P99 < l.P50 || l.Max < l.P99 {
		t.Errorf("latency percentiles out of order or below the fake's 100 µs: %+v", l)
	}
	if res.OpStats != res.Set || res.Ratio != "0:1" || res.DurationS != 0.2 {
		t.Errorf("result not shaped like lockstep bench --ratio 0:1: %+v", res)
	}
	for k, n := range fake.keys {
		if len(k) != len("key:000000000000") || n != cfg.ValueSize {
			t.Fatalf("Put %q with a %d-byte value; want key:%%012d and %d bytes", k, n, cfg.ValueSize)
		}
	}
	if len(fake.keys) > cfg.Keys {
		t.Errorf("%d distinct keys, want at most %d", len(fake.keys), cfg.Keys)
	}
}

func TestLoadStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := load(ctx, config{Clients: 2, Keys: 1, Duration: time.Hour, Seed: 1}, []putter{&fakeEtcd{}, &fakeEtcd{}})
	if !res.Interrupted || res.Set.Ops != 0 {
		t.Errorf("a cancelled run: interrupted %v with %d Puts; want true and 0", res.Interrupted, res.Set.Ops)
	}
}

func TestParseFlagsRejectsNonsense(t *testing.T) {
	for _, args := range [][]string{{"--clients", "0"}, {"--duration", "0s"}, {"--keys", "0"}, {"--procs", "-1"}, {"extra"}} {
		if _, err := parseFlags(args, &strings.Builder{}); err == nil {
			t.Errorf("parseFlags(%q) accepted it", args)
		}
	}
	o, err := parseFlags([]string{"--clients", "3", "--leader"}, &strings.Builder{})
	if err != nil || o.cfg.Clients != 3 || !o.leader {
		t.Errorf("parseFlags: %+v, %v", o, err)
	}
}
