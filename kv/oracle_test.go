package kv

import (
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/lockstep/lockstep/resp"
)

// The Oracle tests compare replies with a real Redis 7 server, given as
// REDIS_ORACLE=host:port (a scratch instance: they run FLUSHALL). They are
// skipped otherwise. For example:
//
//	redis-server --port 6399 --save '' &
//	REDIS_ORACLE=127.0.0.1:6399 go test -run Oracle -v ./kv

// oracle sends commands to the Redis named by REDIS_ORACLE.
type oracle struct {
	tb   testing.TB
	conn net.Conn
	r    *resp.Reader
}

func newOracle(tb testing.TB) *oracle {
	addr := os.Getenv("REDIS_ORACLE")
	if addr == "" {
		tb.Skip("REDIS_ORACLE not set")
	}
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return &oracle{tb: tb, conn: conn, r: resp.NewReader(conn)}
}

func (o *oracle) do(args ...string) resp.Value {
	o.tb.Helper()
	if _, err := o.conn.Write(resp.AppendCommandStrings(nil, args...)); err != nil {
		o.tb.Fatal(err)
	}
	v, err := o.r.ReadValue()
	if err != nil {
		o.tb.Fatal(err)
	}
	return v
}

func (o *oracle) raw(args ...string) string { return string(resp.AppendValue(nil, o.do(args...))) }

// TestOracleScripts runs each command script up to its first clock move
// (Redis's clock cannot be moved). Replies that depend on the wall clock
// (PTTL, absolute times near baseTime) are expected to differ.
func TestOracleScripts(t *testing.T) {
	o := newOracle(t)
	names := make([]string, 0, len(commandScripts))
	for n := range commandScripts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		o.do("FLUSHALL")
		for i, s := range commandScripts[name] {
			if s.args == nil {
				break
			}
			if got := o.raw(s.args...); got != s.want {
				t.Logf("%s step %d %q: redis %q, script %q", name, i, s.args, got, s.want)
			}
		}
	}
}

func TestOracleGlob(t *testing.T) {
	o := newOracle(t)
	rng := rand.New(rand.NewPCG(1, 2))
	gen := func(n int, alphabet string) string {
		b := make([]byte, 1+rng.IntN(n))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	for range 20000 {
		key, pat := gen(6, `ab-]^\`), gen(7, `ab*?[]^-\`)
		if pat == "*" {
			continue // KEYS special-cases it
		}
		o.do("FLUSHALL")
		o.do("SET", key, "x")
		got := len(o.do("KEYS", pat).Array) == 1
		if ours := globMatch([]byte(pat), []byte(key)); got != ours {
			t.Errorf("pattern %q key %q: redis %v, ours %v", pat, key, got, ours)
		}
	}
}

// TestOracleRandom runs a random stream of commands against both, with the
// Machine's clock following the wall clock, and requires identical replies.
// The stream avoids replies that hinge on a millisecond (EXPIRE GT and LT
// between equal times), which the two clocks cannot agree on.
func TestOracleRandom(t *testing.T) {
	o := newOracle(t)
	o.do("FLUSHALL")
	h := newHarness(t, memStore)
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 7))
	for i := range 5000 {
		args := oracleCommand(rng)
		h.env.now = time.Now().UnixMilli()
		if got, ours := o.raw(args...), h.do(args...); got != ours {
			t.Fatalf("step %d %q: redis %q, ours %q", i, args, got, ours)
		}
	}
}

func oracleCommand(rng *rand.Rand) []string {
	key := func() string { return "k" + strconv.Itoa(rng.IntN(6)) }
	num := func() string {
		switch rng.IntN(6) {
		case 0:
			return "9223372036854775807"
		case 1:
			return "-9223372036854775808"
		case 2:
			return "0" + strconv.Itoa(rng.IntN(9))
		}
		return strconv.Itoa(rng.IntN(200) - 100)
	}
	val := func() string {
		if rng.IntN(2) == 0 {
			return num()
		}
		return "v" + strconv.Itoa(rng.IntN(10))
	}
	// Whole seconds keep TTL's rounding away from its boundary whatever the
	// few milliseconds between the two clocks.
	long := func() string { return strconv.Itoa(1000 * (100 + rng.IntN(1000))) }
	pick := func(o ...string) string { return o[rng.IntN(len(o))] }
	switch rng.IntN(15) {
	case 0, 1:
		args := []string{pick("SET", "set"), key(), val()}
		for range rng.IntN(4) {
			opt := pick("NX", "XX", "GET", "KEEPTTL", "EX", "PX", "nx", "FOO")
			args = append(args, opt)
			if opt == "EX" || opt == "PX" {
				args = append(args, pick(long(), num()))
			}
		}
		return args
	case 2:
		return []string{pick("SETNX", "GETSET", "APPEND"), key(), val()}
	case 3:
		return []string{pick("GETDEL", "GET", "STRLEN", "TYPE", "PERSIST", "TTL"), key()}
	case 4:
		return []string{pick("DEL", "EXISTS", "MGET", "UNLINK"), key(), key(), key()}
	case 5, 6:
		return []string{pick("INCR", "DECR"), key()}
	case 7, 8:
		return []string{pick("INCRBY", "DECRBY"), key(), num()}
	case 9:
		args := []string{"MSET", key(), val(), key(), val()}
		if rng.IntN(5) == 0 {
			args = args[:4]
		}
		return args
	case 10:
		args := []string{pick("EXPIRE", "PEXPIRE"), key(), pick(long(), num())}
		for range rng.IntN(3) {
			args = append(args, pick("NX", "XX", "FOO", "nx"))
		}
		return args
	case 11:
		return []string{"DBSIZE"}
	case 12:
		return []string{pick("SETEX", "PSETEX"), key(), pick("0", "-1", "x", long()), val()}
	case 13:
		if rng.IntN(10) == 0 {
			return []string{"FLUSHALL"}
		}
	}
	return []string{"GET", key()}
}
