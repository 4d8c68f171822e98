package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"math"
	"math/rand/v2"
	"net"
	"reflect"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockstep/lockstep/internal/proctest"
)

var flagSeed = flag.Uint64("seed", 0, "replay this proxy seed instead of a random one")

func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := *flagSeed
	for seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (replay: go test -run '^%s$' -seed %d ./internal/faultproxy/)", seed, t.Name(), seed)
	return seed
}

func newRedis(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 1})
	t.Cleanup(func() { c.Close() })
	return c
}

// TestTransparentGoRedis drives a default go-redis client through a proxy
// without faults: it must not notice the proxy.
func TestTransparentGoRedis(t *testing.T) {
	srv := startFake(t)
	p := startProxy(t, Options{Target: srv.addr()})
	c := newRedis(t, p.Addr())
	ctx := t.Context()

	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
	for want := int64(1); want <= 3; want++ {
		if n, err := c.Incr(ctx, "k").Result(); err != nil || n != want {
			t.Fatalf("INCR = %d, %v; want %d", n, err, want)
		}
	}
	if err := c.Get(ctx, "missing").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET of a missing key: %v, want redis.Nil", err)
	}
	cmds, err := c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for range 5 {
			pipe.Incr(ctx, "k")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	for i, cmd := range cmds {
		if n := cmd.(*redis.IntCmd).Val(); n != int64(4+i) {
			t.Fatalf("pipelined INCR %d = %d, want %d", i, n, 4+i)
		}
	}
	if err := c.Do(ctx, "NOSUCH").Err(); err == nil || err.Error() != "ERR unknown command 'NOSUCH'" {
		t.Fatalf("unknown command: %v", err)
	}
	if st := p.Stats(); st.RequestsDropped != 0 || st.RepliesDropped != 0 || st.Forwarded < 10 {
		t.Fatalf("stats %+v: want at least 10 forwarded and nothing dropped", st)
	}
}

// TestTransparentReplies checks that replies of every type, pipelined
// requests and values larger than a read pass through unchanged.
func TestTransparentReplies(t *testing.T) {
	srv := startFake(t)
	p := startProxy(t, Options{Target: srv.addr()})
	c := dialRaw(t, p.Addr())
	big := string(bytes.Repeat([]byte("0123456789"), 100_000)) // 1 MB

	c.send(t, []string{"NESTED"}, []string{"ECHO", big}, []string{"INCR", "x"}, []string{"GET", "y"})
	if v := c.read(t); !reflect.DeepEqual(v, nested) {
		t.Fatalf("NESTED through the proxy = %v, want %v", v, nested)
	}
	if v := c.read(t); v.Type != '$' || string(v.Str) != big {
		t.Fatalf("ECHO of 1 MB came back as type %q, %d bytes", v.Type, len(v.Str))
	}
	if v := c.read(t); v.Type != ':' || v.Int != 1 {
		t.Fatalf("INCR = %v, want (integer) 1", v)
	}
	if v := c.read(t); v.Type != '$' || !v.Null {
		t.Fatalf("GET of a missing key = %v, want (nil)", v)
	}
	c.send(t, []string{"HELLO", "3"})
	if v := c.read(t); v.Type != '-' || !bytes.HasPrefix(v.Str, []byte("NOPROTO")) {
		t.Fatalf("HELLO 3 = %v, want NOPROTO", v)
	}
	if got := srv.commands(); got != 4 {
		t.Fatalf("server received %d commands, want 4 (HELLO 3 is answered by the proxy)", got)
	}
}

// TestDropReply checks that with DropReply 1 the server runs the command but
// the client gets a closed connection instead of the reply.
func TestDropReply(t *testing.T) {
	srv := startFake(t)
	p := startProxy(t, Options{Target: srv.addr(), DropReply: 1})
	c := dialRaw(t, p.Addr())
	c.send(t, []string{"INCR", "k"})
	c.expectClosed(t)
	if n := srv.count("k"); n != 1 {
		t.Fatalf("server counted %d INCRs, want 1: the request must have run", n)
	}
	if st := p.Stats(); st != (Stats{Forwarded: 1, RepliesDropped: 1}) {
		t.Fatalf("stats %+v, want 1 forwarded and 1 reply dropped", st)
	}

	// go-redis sees an error, not a reply, and the server ran INCR again.
	// Its CLIENT SETINFO at connect would lose its reply first, so skip it.
	g := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1, DisableIdentity: true})
	defer g.Close()
	if err := g.Incr(t.Context(), "k").Err(); err == nil {
		t.Fatal("INCR through a proxy dropping every reply succeeded")
	}
	if n := srv.count("k"); n != 2 {
		t.Fatalf("server counted %d INCRs, want 2", n)
	}
}

// TestDropRequest checks that with DropRequest 1 the server never sees the
// command and the client gets a closed connection.
func TestDropRequest(t *testing.T) {
	srv := startFake(t)
	p := startProxy(t, Options{Target: srv.addr(), DropRequest: 1})
	c := dialRaw(t, p.Addr())
	c.send(t, []string{"INCR", "k"}, []string{"INCR", "k"})
	c.expectClosed(t)
	// The proxy decides to drop before it writes anything to the server,
	// so by the time the client sees the close the server cannot have
	// the command.
	if n := srv.commands(); n != 0 {
		t.Fatalf("server received %d commands, want none", n)
	}
	if st := p.Stats(); st != (Stats{RequestsDropped: 1}) {
		t.Fatalf("stats %+v, want 1 request dropped", st)
	}
}

// TestDelay checks that a request is held back at least Delay.
func TestDelay(t *testing.T) {
	const delay = 50 * time.Millisecond
	srv := startFake(t)
	p := startProxy(t, Options{Target: srv.addr(), Delay: delay, Jitter: 10 * time.Millisecond, Seed: testSeed(t)})
	c := dialRaw(t, p.Addr())
	for range 3 {
		start := time.Now()
		c.send(t, []string{"PING"})
		if v := c.read(t); string(v.Str) != "PONG" {
			t.Fatalf("PING = %v", v)
		}
		if took := time.Since(start); took < delay {
			t.Fatalf("PING answered after %v, before the %v delay", took, delay)
		}
	}
}

// TestMixedDropsReplay runs many requests through a proxy dropping some
// requests and some replies, reconnecting after each drop as a client would,
// and checks that the counters add up, that the server ran exactly the
// forwarded requests, and that the seed replays the same drops.
func TestMixedDropsReplay(t *testing.T) {
	seed := testSeed(t)
	run := func() ([]string, Stats, int) {
		srv := startFake(t)
		p := startProxy(t, Options{Target: srv.addr(), DropRequest: 0.2, DropReply: 0.2, Seed: seed})
		var outcomes []string
		c := dialRaw(t, p.Addr())
		for range 100 {
			c.send(t, []string{"INCR", "k"})
			if _, err := c.r.ReadValue(); err != nil {
				outcomes = append(outcomes, "dropped")
				c = dialRaw(t, p.Addr())
				continue
			}
			outcomes = append(outcomes, "ok")
		}
		return outcomes, p.Stats(), int(srv.count("k"))
	}
	first, st, ran := run()
	if st.Forwarded+st.RequestsDropped != 100 {
		t.Fatalf("stats %+v do not account for 100 requests", st)
	}
	if st.RequestsDropped == 0 || st.RepliesDropped == 0 || st.Forwarded == st.RepliesDropped {
		t.Fatalf("stats %+v: want some of each outcome at 20%% drop rates", st)
	}
	if ran != int(st.Forwarded) {
		t.Fatalf("server ran %d INCRs, proxy forwarded %d", ran, st.Forwarded)
	}
	if again, _, _ := run(); !reflect.DeepEqual(first, again) {
		t.Fatalf("seed %d gave different drops on replay:\n%v\n%v", seed, first, again)
	}
}

func TestSetTarget(t *testing.T) {
	a, b := startFake(t), startFake(t)
	p := startProxy(t, Options{Target: a.addr()})
	ca := dialRaw(t, p.Addr())
	ca.send(t, []string{"INCR", "k"})
	ca.read(t)
	p.SetTarget(b.addr())
	cb := dialRaw(t, p.Addr())
	cb.send(t, []string{"INCR", "k"})
	cb.read(t)
	ca.send(t, []string{"INCR", "k"}) // an open connection stays with a
	ca.read(t)
	if na, nb := a.count("k"), b.count("k"); na != 2 || nb != 1 {
		t.Fatalf("counts a=%d b=%d, want a=2 (old connection) b=1 (new)", na, nb)
	}
}

// TestUnreachableTarget checks that a client whose server cannot be reached
// gets a closed connection.
func TestUnreachableTarget(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	p := startProxy(t, Options{Target: addr})
	c := dialRaw(t, p.Addr())
	c.send(t, []string{"PING"})
	c.expectClosed(t)
}

// TestCancelStops checks that cancelling Start's context closes the open
// connections and the listener.
func TestCancelStops(t *testing.T) {
	srv := startFake(t)
	ctx, cancel := context.WithCancel(t.Context())
	p, err := Start(ctx, Options{Target: srv.addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := dialRaw(t, p.Addr())
	c.send(t, []string{"PING"})
	c.read(t)
	cancel()
	c.expectClosed(t)
	proctest.Eventually(t, 5*time.Second, "the listener to close", func() bool {
		conn, err := net.Dial("tcp", p.Addr())
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
}

func TestSeedPicked(t *testing.T) {
	p := startProxy(t, Options{Target: "127.0.0.1:1"})
	if p.Seed() == 0 {
		t.Fatal("Seed() is 0 for Options.Seed 0")
	}
	q := startProxy(t, Options{Target: "127.0.0.1:1", Seed: 42})
	if q.Seed() != 42 {
		t.Fatalf("Seed() = %d, want 42", q.Seed())
	}
}

func TestInvalidOptions(t *testing.T) {
	for _, o := range []Options{
		{},
		{Target: "x:1", DropRequest: -0.1},
		{Target: "x:1", DropReply: 1.1},
		{Target: "x:1", DropReply: math.NaN()},
		{Target: "x:1", Delay: -1},
		{Target: "x:1", Jitter: -1},
	} {
		p, err := Start(t.Context(), o)
		if err == nil {
			p.Close()
			t.Errorf("Options %+v accepted", o)
			continue
		}
		if !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("Options %+v: %v, want ErrInvalidOptions", o, err)
		}
	}
}

// TestGoRedisAgainstRedis puts the proxy in front of a real redis-server,
// which speaks RESP3 if asked: the proxy must keep a default go-redis
// client on RESP2, whose replies it can frame.
func TestGoRedisAgainstRedis(t *testing.T) {
	srv := proctest.StartRedis(t)
	p := startProxy(t, Options{Target: srv.Addr})
	c := newRedis(t, p.Addr())
	ctx := t.Context()
	if err := c.HSet(ctx, "h", "a", "1", "b", "2").Err(); err != nil {
		t.Fatalf("HSET: %v", err)
	}
	got, err := c.HGetAll(ctx, "h").Result()
	if err != nil || !reflect.DeepEqual(got, map[string]string{"a": "1", "b": "2"}) {
		t.Fatalf("HGETALL = %v, %v", got, err)
	}
	if err := c.Get(ctx, "missing").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET of a missing key: %v, want redis.Nil", err)
	}
	if st := p.Stats(); st.Forwarded < 3 {
		t.Fatalf("stats %+v: the commands did not go through the proxy", st)
	}
}
