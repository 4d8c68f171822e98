package e2e

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockstep/lockstep/internal/proctest"
)

// TestGoRedis drives every supported command through go-redis, which also
// checks the connection handshake (HELLO fallback, CLIENT SETINFO).
func TestGoRedis(t *testing.T) {
	ls := proctest.StartLockstep(t, lockstepBin, "--listen", "127.0.0.1:0", "--storage", "memory")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: ls.Addr, ClientName: "e2e"})
	defer c.Close()

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	eq := func(got, want any) {
		t.Helper()
		if got != want {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	eq(c.Ping(ctx).Val(), "PONG")
	eq(c.Echo(ctx, "hi").Val(), "hi")
	must(c.Set(ctx, "k", "v", 0).Err())
	eq(c.Get(ctx, "k").Val(), "v")
	if _, err := c.Get(ctx, "missing").Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET missing: %v, want redis.Nil", err)
	}
	eq(c.SetNX(ctx, "k", "x", 0).Val(), false)
	eq(c.SetXX(ctx, "k", "w", time.Minute).Val(), true)
	if ttl := c.TTL(ctx, "k").Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("TTL %v", ttl)
	}
	eq(c.SetArgs(ctx, "k", "z", redis.SetArgs{KeepTTL: true, Get: true}).Val(), "w")
	eq(c.Do(ctx, "GETSET", "k", "y").Val(), "z")
	eq(c.GetDel(ctx, "k").Val(), "y")
	eq(c.Exists(ctx, "k").Val(), int64(0))
	eq(c.Incr(ctx, "n").Val(), int64(1))
	eq(c.IncrBy(ctx, "n", 9).Val(), int64(10))
	eq(c.Decr(ctx, "n").Val(), int64(9))
	eq(c.DecrBy(ctx, "n", 4).Val(), int64(5))
	eq(c.Append(ctx, "s", "ab").Val(), int64(2))
	eq(c.StrLen(ctx, "s").Val(), int64(2))
	must(c.MSet(ctx, "a", "1", "b", "2").Err())
	if got := c.MGet(ctx, "a", "nope", "b").Val(); len(got) != 3 || got[0] != "1" || got[1] != nil || got[2] != "2" {
		t.Fatalf("MGET %v", got)
	}
	eq(c.Expire(ctx, "a", time.Hour).Val(), true)
	eq(c.PExpire(ctx, "b", time.Hour).Val(), true)
	if pttl := c.PTTL(ctx, "b").Val(); pttl <= 59*time.Minute {
		t.Fatalf("PTTL %v", pttl)
	}
	eq(c.Persist(ctx, "a").Val(), true)
	eq(c.Type(ctx, "a").Val(), "string")
	eq(c.Del(ctx, "a", "b", "zz").Val(), int64(2))
	eq(c.DBSize(ctx).Val(), int64(2)) // n and s
	eq(c.Do(ctx, "CLIENT", "GETNAME").Val(), "e2e")
	if id := c.ClientID(ctx).Val(); id <= 0 {
		t.Fatalf("CLIENT ID %d", id)
	}
	if info := c.Info(ctx, "keyspace").Val(); !strings.Contains(info, "# Keyspace") || !strings.Contains(info, "db0:keys=2") {
		t.Fatalf("INFO keyspace: %q", info)
	}
	eq(c.FlushAll(ctx).Val(), "OK")
	testScan(t, ctx, c)
}

func testScan(t *testing.T, ctx context.Context, c *redis.Client) {
	t.Helper()
	want := make([]string, 0, 250)
	for i := range 250 {
		k := "scan:" + string(rune('a'+i%26)) + string(rune('0'+i/26))
		want = append(want, k)
		if err := c.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	iter := c.Scan(ctx, 0, "scan:*", 17).Iterator()
	for iter.Next(ctx) {
		got = append(got, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("SCAN returned %d keys, want %d", len(got), len(want))
	}
}
