package e2e

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/lockstep/lockstep/internal/proctest"
	"github.com/lockstep/lockstep/resp"
)

// compatScript is run against lockstep and a real redis-server; every reply
// must match byte for byte. Commands whose replies legitimately differ
// (INFO, CLIENT ID, HELLO) are covered by their own tests.
var compatScript = [][]string{
	{"PING"}, {"PING", "hello"}, {"ECHO", "x y"},
	{"SET", "k", "v"}, {"GET", "k"}, {"GET", "missing"},
	{"SET", "k", "v2", "NX"}, {"SET", "k", "v3", "XX"}, {"SET", "new", "v", "XX"}, {"GET", "new"},
	{"SET", "k", "v4", "GET"}, {"SET", "nokey", "x", "GET"}, {"SET", "nx", "a", "NX", "GET"}, {"SET", "nx", "b", "NX", "GET"},
	{"SET", "k", "v", "NX", "XX"}, {"SET", "k", "v", "EX", "10", "PX", "100"}, {"SET", "k", "v", "EX", "0"},
	{"SET", "k", "v", "EX", "-1"}, {"SET", "k", "v", "EX", "abc"}, {"SET", "k", "v", "KEEPTTL", "EX", "5"}, {"SET", "k", "v", "BOGUS"},
	{"SET", "ttl", "v", "EX", "100"}, {"TTL", "ttl"}, {"SET", "ttl", "w", "KEEPTTL"}, {"TTL", "ttl"}, {"SET", "ttl", "z"}, {"TTL", "ttl"},
	{"SET", "past", "v", "PXAT", "1"}, {"GET", "past"}, {"EXISTS", "past"}, {"SET", "past", "v", "EXAT", "1"}, {"TTL", "past"},
	{"SETNX", "sn", "1"}, {"SETNX", "sn", "2"}, {"GET", "sn"},
	{"GETSET", "gs", "1"}, {"GETSET", "gs", "2"}, {"GETDEL", "gs"}, {"GETDEL", "gs"},
	{"MSET", "a", "1", "b", "2", "c", "3"}, {"MSET", "a", "1", "b"}, {"MGET", "a", "b", "nope", "c"},
	{"DEL", "a", "a", "b", "nope"}, {"EXISTS", "c", "c", "a"},
	{"INCR", "n"}, {"INCRBY", "n", "41"}, {"DECR", "n"}, {"DECRBY", "n", "-10"}, {"INCRBY", "n", "x"}, {"GET", "n"},
	{"SET", "s", "abc"}, {"INCR", "s"}, {"SET", "s", " 1"}, {"INCR", "s"}, {"SET", "s", "01"}, {"INCR", "s"}, {"SET", "s", "+1"}, {"INCR", "s"},
	{"SET", "big", "9223372036854775807"}, {"INCR", "big"}, {"SET", "small", "-9223372036854775808"}, {"DECR", "small"},
	{"DECRBY", "small", "-9223372036854775808"}, {"INCRBY", "n", "9223372036854775808"},
	{"APPEND", "ap", "hello"}, {"APPEND", "ap", " world"}, {"GET", "ap"}, {"STRLEN", "ap"}, {"STRLEN", "nope"},
	{"SET", "e", "v"}, {"EXPIRE", "e", "100"}, {"TTL", "e"}, {"PEXPIRE", "e", "100000"}, {"PTTL", "e"}, {"PERSIST", "e"}, {"PERSIST", "e"}, {"TTL", "e"},
	{"EXPIRE", "nope", "10"}, {"TTL", "nope"}, {"PTTL", "nope"}, {"EXPIRE", "e", "abc"},
	{"EXPIRE", "e", "100", "NX"}, {"EXPIRE", "e", "200", "NX"}, {"EXPIRE", "e", "50", "GT"}, {"EXPIRE", "e", "300", "GT"}, {"EXPIRE", "e", "400", "LT"}, {"EXPIRE", "e", "20", "LT"}, {"TTL", "e"},
	{"EXPIRE", "e", "10", "NX", "XX"}, {"EXPIRE", "e", "10", "GT", "LT"}, {"EXPIRE", "e", "10", "FOO"},
	{"PERSIST", "e"}, {"EXPIRE", "e", "10", "XX"}, {"EXPIRE", "e", "10", "GT"}, {"PERSIST", "e"}, {"EXPIRE", "e", "10", "LT"},
	{"EXPIRE", "e", "-1"}, {"GET", "e"}, {"EXISTS", "e"},
	{"EXPIRE", "k", "9223372036854775807"}, {"PEXPIRE", "k", "9223372036854775807"},
	{"TYPE", "k"}, {"TYPE", "nope"}, {"DBSIZE"},
	{"SELECT", "0"}, {"SELECT", "x"}, // SELECT 1 differs: lockstep has one database

	{"GET"}, {"GET", "a", "b"}, {"SET", "k"}, {"MGET"}, {"NOSUCHCOMMAND", "arg1", "arg2"}, {"nosuch"},
	{"CLIENT", "SETNAME", "my-conn"}, {"CLIENT", "GETNAME"}, {"CLIENT", "SETNAME", "bad name"}, {"CLIENT", "NOSUCH"},
	{"AUTH", "pw"},
	{"FLUSHALL"}, {"DBSIZE"}, {"GET", "k"},
	{"SCAN", "0"}, {"SET", "only", "1"}, {"SCAN", "0"}, {"SCAN", "0", "MATCH", "o*"}, {"SCAN", "0", "MATCH", "x*", "COUNT", "100"}, {"SCAN", "0", "COUNT", "0"},
}

func TestRedisCompat(t *testing.T) {
	redis := proctest.StartRedis(t)
	ls := proctest.StartLockstep(t, lockstepBin, "--listen", "127.0.0.1:0", "--storage", "memory")
	rc := dialRaw(t, redis.Addr)
	lc := dialRaw(t, ls.Addr)
	for _, cmd := range compatScript {
		want := rc.do(t, cmd...)
		got := lc.do(t, cmd...)
		if closeTTL(cmd[0], got, want) {
			continue
		}
		if got.String() != want.String() {
			t.Errorf("%q:\n lockstep: %s\n    redis: %s", strings.Join(cmd, " "), got, want)
		}
	}
}

// closeTTL accepts a PTTL that differs by the few milliseconds between the
// two servers' clocks being read; everything else must match exactly.
func closeTTL(cmd string, a, b resp.Value) bool {
	if !strings.EqualFold(cmd, "PTTL") || a.Type != ':' || b.Type != ':' || a.Int < 0 || b.Int < 0 {
		return false
	}
	d := a.Int - b.Int
	return d > -200 && d < 200
}

// rawConn sends commands and reads replies without a client library, so
// replies are compared exactly as they arrived.
type rawConn struct {
	c  net.Conn
	r  *resp.Reader
	bw *bufio.Writer
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{c: c, r: resp.NewReader(c), bw: bufio.NewWriter(c)}
}

func (rc *rawConn) do(t *testing.T, args ...string) resp.Value {
	t.Helper()
	_ = rc.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := rc.bw.Write(resp.AppendCommandStrings(nil, args...)); err != nil {
		t.Fatal(err)
	}
	if err := rc.bw.Flush(); err != nil {
		t.Fatal(err)
	}
	v, err := rc.r.ReadValue()
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return v
}
