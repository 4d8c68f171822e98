package kv

import (
	"strconv"
	"strings"
	"testing"

	"github.com/lockstep/lockstep/statemachine"
)

// step is one command and its exact expected reply, or (args nil) a move of
// the fake clock by advance milliseconds.
type step struct {
	args    []string
	want    string
	advance int64
}

// c is a step whose arguments are cmd split on spaces.
func c(cmd, want string) step { return step{args: strings.Fields(cmd), want: want} }

// ca is a step with explicit arguments, for ones holding spaces or empty.
func ca(want string, args ...string) step { return step{args: args, want: want} }

func tick(ms int64) step { return step{advance: ms} }

func at(ms int64) string { return strconv.FormatInt(baseTime+ms, 10) }

// commandScripts are replies checked against Redis 7.0 by hand. Each
// script runs on a fresh machine.
var commandScripts = map[string][]step{
	"set basic": {
		c("SET k v", rOK),
		c("GET k", rBulk("v")),
		c("sEt k v2", rOK),
		c("get k", rBulk("v2")),
		ca(rOK, "SET", "empty", ""),
		c("GET empty", rBulk("")),
		c("GET missing", rNull),
		ca(rOK, "SET", "bin\x00key", "v\r\nx"),
		ca(rBulk("v\r\nx"), "GET", "bin\x00key"),
	},
	"set nx xx": {
		c("SET k v NX", rOK),
		c("SET k w NX", rNull),
		c("GET k", rBulk("v")),
		c("SET k w XX", rOK),
		c("GET k", rBulk("w")),
		c("SET other w XX", rNull),
		c("EXISTS other", rInt(0)),
		c("SET k v NX XX", rErr(errSyntax)),
		c("SET k v XX NX", rErr(errSyntax)),
		c("SET k v nx NX", rNull),
		c("SET k z xx XX", rOK),
		c("GET k", rBulk("z")),
	},
	"set option errors": {
		c("SET k v EX 10 PX 100", rErr(errSyntax)),
		c("SET k v PX 10 EXAT 100", rErr(errSyntax)),
		c("SET k v EXAT 10 PXAT 100", rErr(errSyntax)),
		c("SET k v EX 10 KEEPTTL", rErr(errSyntax)),
		c("SET k v KEEPTTL EX 10", rErr(errSyntax)),
		c("SET k v KEEPTTL PXAT 10", rErr(errSyntax)),
		c("SET k v EX", rErr(errSyntax)),
		c("SET k v FOO", rErr(errSyntax)),
		c("SET k v EX 10 FOO", rErr(errSyntax)),
		c("SET k v EX 0", rErr("ERR invalid expire time in 'set' command")),
		c("SET k v EX -1", rErr("ERR invalid expire time in 'set' command")),
		c("SET k v PX 0", rErr("ERR invalid expire time in 'set' command")),
		c("SET k v EXAT 0", rErr("ERR invalid expire time in 'set' command")),
		c("SET k v EX 9223372036854776", rErr("ERR invalid expire time in 'set' command")),
		c("SET k v PX 9223372036854775807", rErr("ERR invalid expire time in 'set' command")),
		c("SET k v EX abc", rErr(errNotInt)),
		c("SET k v EX 01", rErr(errNotInt)),
		c("SET k v PX 9223372036854775808", rErr(errNotInt)),
		c("EXISTS k", rInt(0)),
		c("SET k v EXAT 9223372036854775", rOK),
		c("TTL k", rInt(9223372036854775-baseTime/1000)),
	},
	"set expiry": {
		c("SET k v EX 10", rOK),
		c("TTL k", rInt(10)),
		c("PTTL k", rInt(10000)),
		tick(2500),
		c("TTL k", rInt(8)),
		c("PTTL k", rInt(7500)),
		tick(1),
		c("TTL k", rInt(7)),
		c("SET k v2 KEEPTTL", rOK),
		c("PTTL k", rInt(7499)),
		c("GET k", rBulk("v2")),
		c("SET k v3", rOK),
		c("PTTL k", rInt(-1)),
		c("SET k v EX 10 EX 20", rOK),
		c("TTL k", rInt(20)),
		c("SET k v PX 1500", rOK),
		c("PTTL k", rInt(1500)),
		c("TTL k", rInt(2)),
		c("SET new v KEEPTTL", rOK),
		c("TTL new", rInt(-1)),
		c("SET k v PXAT "+at(2501+5000), rOK),
		c("PTTL k", rInt(5000)),
		c("SET k v EXAT "+strconv.FormatInt(baseTime/1000+103, 10), rOK),
		c("PTTL k", rInt(103000-2501)),
		c("TTL k", rInt(100)),
		tick(10000),
		c("GET k", rBulk("v")),
	},
	"set expiry in the past": {
		c("SET p v EXAT 1", rOK),
		c("EXISTS p", rInt(0)),
		c("GET p", rNull),
		c("SET p v PXAT "+at(0), rOK),
		c("EXISTS p", rInt(0)),
		c("SET p v PXAT "+at(1), rOK),
		c("PTTL p", rInt(1)),
		tick(1),
		c("GET p", rNull),
		c("TTL p", rInt(-2)),
		c("SET q a", rOK),
		c("SET q b PXAT 5 GET", rBulk("a")),
		c("GET q", rNull),
		// p expired but no write has touched it: like Redis, DBSIZE
		// counts it until the expiry sweep deletes it. q was deleted by
		// the SET that expired it.
		c("DBSIZE", rInt(1)),
	},
	"set get": {
		c("SET g v GET", rNull),
		c("GET g", rBulk("v")),
		c("SET g w GET", rBulk("v")),
		c("SET g x NX GET", rBulk("w")),
		c("GET g", rBulk("w")),
		c("SET n x NX GET", rNull),
		c("GET n", rBulk("x")),
		c("SET g y XX GET", rBulk("w")),
		c("GET g", rBulk("y")),
		c("SET m y XX GET", rNull),
		c("EXISTS m", rInt(0)),
		c("SET g z GET EX 100", rBulk("y")),
		c("TTL g", rInt(100)),
		c("SET g a GET KEEPTTL", rBulk("z")),
		c("TTL g", rInt(100)),
		c("SET g b get", rBulk("a")),
		c("TTL g", rInt(-1)),
	},
	"setnx setex psetex getset": {
		c("SETNX a 1", rInt(1)),
		c("SETNX a 2", rInt(0)),
		c("GET a", rBulk("1")),
		c("SETEX s 10 v", rOK),
		c("TTL s", rInt(10)),
		c("SETEX s 0 v", rErr("ERR invalid expire time in 'setex' command")),
		c("SETEX s x v", rErr(errNotInt)),
		c("PSETEX s 1500 v", rOK),
		c("PTTL s", rInt(1500)),
		c("PSETEX s -5 v", rErr("ERR invalid expire time in 'psetex' command")),
		c("GETSET gs v", rNull),
		c("GETSET gs w", rBulk("v")),
		c("GET gs", rBulk("w")),
		c("SET t v EX 100", rOK),
		c("GETSET t w", rBulk("v")),
		c("TTL t", rInt(-1)),
	},
	"getdel del unlink": {
		c("SET k v", rOK),
		c("GETDEL k", rBulk("v")),
		c("GET k", rNull),
		c("GETDEL k", rNull),
		c("MSET a 1 b 2 c 3", rOK),
		c("DEL a b x a", rInt(2)),
		c("EXISTS a b c", rInt(1)),
		c("UNLINK c c", rInt(1)),
		c("DEL c", rInt(0)),
		c("DBSIZE", rInt(0)),
	},
	"incr decr": {
		c("INCR n", rInt(1)),
		c("INCR n", rInt(2)),
		c("INCRBY n 10", rInt(12)),
		c("DECR n", rInt(11)),
		c("DECRBY n 20", rInt(-9)),
		c("INCRBY n -1", rInt(-10)),
		c("GET n", rBulk("-10")),
		c("DECR fresh", rInt(-1)),
		c("INCRBY n x", rErr(errNotInt)),
		ca(rErr(errNotInt), "INCRBY", "n", " 1"),
		c("INCRBY n 01", rErr(errNotInt)),
		c("INCRBY n +1", rErr(errNotInt)),
		c("DECRBY n 1.5", rErr(errNotInt)),
		c("GET n", rBulk("-10")),
	},
	"incr parsing": {
		c("SET s abc", rOK),
		c("INCR s", rErr(errNotInt)),
		ca(rOK, "SET", "s", " 1"),
		c("INCR s", rErr(errNotInt)),
		ca(rOK, "SET", "s", "1 "),
		c("INCR s", rErr(errNotInt)),
		c("SET s 01", rOK),
		c("INCR s", rErr(errNotInt)),
		c("SET s +1", rOK),
		c("INCR s", rErr(errNotInt)),
		c("SET s -0", rOK),
		c("INCR s", rErr(errNotInt)),
		ca(rOK, "SET", "s", ""),
		c("INCR s", rErr(errNotInt)),
		c("SET s 1.0", rOK),
		c("INCR s", rErr(errNotInt)),
		c("SET s 0", rOK),
		c("INCR s", rInt(1)),
		c("SET s -5", rOK),
		c("INCR s", rInt(-4)),
		c("SET s 9223372036854775808", rOK),
		c("INCR s", rErr(errNotInt)),
	},
	"incr overflow": {
		c("SET m 9223372036854775807", rOK),
		c("INCR m", rErr(errOverflow)),
		c("INCRBY m 1", rErr(errOverflow)),
		c("INCRBY m -1", rInt(9223372036854775806)),
		c("INCRBY m 1", rInt(9223372036854775807)),
		c("SET m -9223372036854775808", rOK),
		c("DECR m", rErr(errOverflow)),
		c("INCRBY m -1", rErr(errOverflow)),
		c("DECRBY m 1", rErr(errOverflow)),
		c("INCR m", rInt(-9223372036854775807)),
		c("DECRBY m -9223372036854775808", rErr("ERR decrement would overflow")),
		c("INCRBY m 9223372036854775808", rErr(errNotInt)),
		c("INCRBY z -9223372036854775808", rInt(-9223372036854775808)),
		c("INCRBY z -1", rErr(errOverflow)),
	},
	"incr keeps ttl": {
		c("SET c 5 EX 100", rOK),
		c("INCR c", rInt(6)),
		c("TTL c", rInt(100)),
		c("SET c 5 PX 100", rOK),
		tick(100),
		c("INCR c", rInt(1)),
		c("TTL c", rInt(-1)),
	},
	"append strlen": {
		c("APPEND ap hello", rInt(5)),
		ca(rInt(11), "APPEND", "ap", " world"),
		c("GET ap", rBulk("hello world")),
		c("STRLEN ap", rInt(11)),
		c("STRLEN missing", rInt(0)),
		c("EXPIRE ap 50", rInt(1)),
		c("APPEND ap !", rInt(12)),
		c("TTL ap", rInt(50)),
		ca(rInt(12), "APPEND", "ap", ""),
	},
	"mset mget exists": {
		c("MSET a 1 b 2", rOK),
		c("MGET a missing b", rArray(rBulk("1"), rNull, rBulk("2"))),
		c("MSET a 1 b", rErr("ERR wrong number of arguments for 'mset' command")),
		c("MSET a 1 a 2", rOK),
		c("GET a", rBulk("2")),
		c("EXPIRE a 10", rInt(1)),
		c("MSET a 3", rOK),
		c("TTL a", rInt(-1)),
		c("EXISTS a a b missing", rInt(3)),
		c("MGET missing", rArray(rNull)),
	},
	"expire": {
		c("EXPIRE missing 10", rInt(0)),
		c("SET k v", rOK),
		c("EXPIRE k 10", rInt(1)),
		c("TTL k", rInt(10)),
		c("EXPIRE k 10 NX", rInt(0)),
		c("EXPIRE k 20 XX", rInt(1)),
		c("TTL k", rInt(20)),
		c("EXPIRE k 10 GT", rInt(0)),
		c("EXPIRE k 20 GT", rInt(0)),
		c("EXPIRE k 30 gt", rInt(1)),
		c("EXPIRE k 40 LT", rInt(0)),
		c("EXPIRE k 5 LT", rInt(1)),
		c("TTL k", rInt(5)),
		c("EXPIRE k 5 XX LT", rInt(0)),
		c("EXPIRE k 4 XX LT", rInt(1)),
		c("PERSIST k", rInt(1)),
		c("PERSIST k", rInt(0)),
		c("EXPIRE k 10 XX", rInt(0)),
		c("EXPIRE k 10 GT", rInt(0)),
		c("EXPIRE k 10 LT", rInt(1)),
		c("PERSIST k", rInt(1)),
		c("EXPIRE k 10 NX", rInt(1)),
		c("TTL k", rInt(10)),
		c("PERSIST missing", rInt(0)),
	},
	"expire errors": {
		c("SET k v", rOK),
		c("EXPIRE k 10 NX XX", rErr("ERR NX and XX, GT or LT options at the same time are not compatible")),
		c("EXPIRE k 10 NX GT", rErr("ERR NX and XX, GT or LT options at the same time are not compatible")),
		c("EXPIRE k 10 GT LT", rErr("ERR GT and LT options at the same time are not compatible")),
		c("EXPIRE k 10 FOO", rErr("ERR Unsupported option FOO")),
		c("EXPIRE k abc FOO", rErr("ERR Unsupported option FOO")),
		c("EXPIRE k abc", rErr(errNotInt)),
		c("EXPIRE k 9223372036854776", rErr("ERR invalid expire time in 'expire' command")),
		c("EXPIRE k -9223372036854776", rErr("ERR invalid expire time in 'expire' command")),
		c("PEXPIRE k 9223372036854775807", rErr("ERR invalid expire time in 'pexpire' command")),
		c("EXPIREAT k 9223372036854776", rErr("ERR invalid expire time in 'expireat' command")),
		c("EXPIRE missing 9223372036854776", rErr("ERR invalid expire time in 'expire' command")),
		c("TTL k", rInt(-1)),
		c("PEXPIRE k -9223372036854775808", rInt(1)),
		c("EXISTS k", rInt(0)),
	},
	"expire in the past": {
		c("SET k v", rOK),
		c("EXPIRE k -1", rInt(1)),
		c("EXISTS k", rInt(0)),
		c("SET k v", rOK),
		c("EXPIRE k 0", rInt(1)),
		c("EXISTS k", rInt(0)),
		c("SET k v", rOK),
		c("PEXPIRE k 0", rInt(1)),
		c("GET k", rNull),
		c("SET k v", rOK),
		c("EXPIREAT k 1", rInt(1)),
		c("GET k", rNull),
		c("SET k v", rOK),
		c("PEXPIREAT k "+at(5000), rInt(1)),
		c("PTTL k", rInt(5000)),
		c("EXPIREAT k "+strconv.FormatInt(baseTime/1000+60, 10), rInt(1)),
		c("TTL k", rInt(60)),
		c("EXPIRE k -1 GT", rInt(0)),
		c("EXPIRE k -1 LT", rInt(1)),
		c("EXISTS k", rInt(0)),
		c("DBSIZE", rInt(0)),
	},
	"ttl type": {
		c("TTL missing", rInt(-2)),
		c("PTTL missing", rInt(-2)),
		c("SET k v", rOK),
		c("TTL k", rInt(-1)),
		c("PTTL k", rInt(-1)),
		c("TYPE k", rSimple("string")),
		c("TYPE missing", rSimple("none")),
		c("PEXPIRE k 1499", rInt(1)),
		c("TTL k", rInt(1)),
		c("PEXPIRE k 1500", rInt(1)),
		c("TTL k", rInt(2)),
		c("PEXPIRE k 499", rInt(1)),
		c("TTL k", rInt(0)),
		tick(499),
		c("TYPE k", rSimple("none")),
		c("PTTL k", rInt(-2)),
	},
	"flushall dbsize": {
		c("DBSIZE", rInt(0)),
		c("MSET a 1 b 2 c 3", rOK),
		c("DBSIZE", rInt(3)),
		c("FLUSHALL", rOK),
		c("DBSIZE", rInt(0)),
		c("GET a", rNull),
		c("SET a 1", rOK),
		c("FLUSHALL ASYNC", rOK),
		c("EXISTS a", rInt(0)),
		c("FLUSHALL sync", rOK),
		c("FLUSHDB", rOK),
		c("FLUSHALL FOO", rErr(errSyntax)),
		c("FLUSHALL SYNC ASYNC", rErr(errSyntax)),
	},
	"arity and unknown": {
		c("GET", rErr("ERR wrong number of arguments for 'get' command")),
		c("GET a b", rErr("ERR wrong number of arguments for 'get' command")),
		c("SET k", rErr("ERR wrong number of arguments for 'set' command")),
		c("MGET", rErr("ERR wrong number of arguments for 'mget' command")),
		c("DBSIZE x", rErr("ERR wrong number of arguments for 'dbsize' command")),
		c("EXPIRE k", rErr("ERR wrong number of arguments for 'expire' command")),
		c("FOO a b", rErr("ERR unknown command 'FOO', with args beginning with: 'a' 'b' ")),
		c("FOO", rErr("ERR unknown command 'FOO', with args beginning with: ")),
		c("EXISTS k", rInt(0)),
	},
}

func testCommands(t *testing.T, newStore storeFactory) {
	for name, steps := range commandScripts {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			h := newHarness(t, newStore)
			for i, s := range steps {
				if s.args == nil {
					h.env.now += s.advance
					continue
				}
				if got := h.do(s.args...); got != s.want {
					t.Fatalf("step %d %q:\n got %q\nwant %q", i, s.args, got, s.want)
				}
			}
		})
	}
}

// testLazyExpiry checks that reads leave an expired key in the store and
// that the next write touching it deletes it through the Update.
func testLazyExpiry(t *testing.T, newStore storeFactory) {
	h := newHarness(t, newStore)
	h.do("SET", "k", "v", "PX", "10")
	h.do("SET", "other", "v", "PX", "10")
	h.env.now += 10
	if got := h.do("GET", "k"); got != rNull {
		t.Fatalf("GET expired = %q", got)
	}
	if keys, expires := h.m.Keyspace(); keys != 2 || expires != 2 {
		t.Fatalf("Keyspace after read = %d, %d; want 2, 2 (reads never delete)", keys, expires)
	}
	if got := h.do("DEL", "k"); got != rInt(0) {
		t.Fatalf("DEL expired = %q", got)
	}
	if keys, _ := h.m.Keyspace(); keys != 1 {
		t.Fatalf("Keyspace after DEL = %d; want 1", keys)
	}
	if got := h.do("SETNX", "other", "w"); got != rInt(1) {
		t.Fatalf("SETNX over expired = %q", got)
	}
	if got := h.do("TTL", "other"); got != rInt(-1) {
		t.Fatalf("TTL after SETNX = %q", got)
	}
}

func testDBSize(t *testing.T, newStore storeFactory) {
	h := newHarness(t, newStore)
	for i := range 50 {
		h.do("SET", "k"+strconv.Itoa(i), "v")
	}
	for i := range 10 {
		h.do("PEXPIRE", "k"+strconv.Itoa(i), strconv.Itoa(100*(i+1)))
	}
	h.env.now += 450
	// Like Redis, DBSIZE counts expired keys until they are deleted.
	if got := h.do("DBSIZE"); got != rInt(50) {
		t.Fatalf("DBSIZE = %q, want 50", got)
	}
	var after []byte
	for {
		u, next, err := h.m.PrepareExpireSweep(after, 7, h.env)
		if err != nil {
			t.Fatal(err)
		}
		if u != nil {
			h.seq++
			if _, err := h.m.Apply(h.seq, u, nil); err != nil {
				t.Fatal(err)
			}
		}
		if next == nil {
			break
		}
		after = next
	}
	if got := h.do("DBSIZE"); got != rInt(46) {
		t.Fatalf("DBSIZE after a full sweep = %q, want 46", got)
	}
	if got := h.do("EXISTS", "k3", "k4"); got != rInt(1) {
		t.Fatalf("EXISTS k3 k4 after sweep = %q, want 1 (k3 expired at +400, k4 expires at +500)", got)
	}
}

// testReadIsolation checks that Read answers only read commands and that
// Prepare accepts a read, carrying its reply and changing nothing.
func testReadIsolation(t *testing.T, newStore storeFactory) {
	h := newHarness(t, newStore)
	h.do("SET", "k", "v")
	out, err := h.m.Read(toArgs([]string{"SET", "k", "w"}), h.env.now, nil)
	if err != nil || string(out) != rErr("ERR write command 'set' sent to the read path") {
		t.Fatalf("Read(SET) = %q, %v", out, err)
	}
	u, err := h.m.Prepare(toArgs([]string{"GET", "k"}), h.env)
	if err != nil {
		t.Fatal(err)
	}
	h.seq++
	out, err = h.m.Apply(h.seq, u, nil)
	if err != nil || string(out) != rBulk("v") {
		t.Fatalf("Apply(Prepare(GET)) = %q, %v", out, err)
	}
	if h.m.AppliedSeq() != h.seq {
		t.Fatalf("AppliedSeq = %d, want %d", h.m.AppliedSeq(), h.seq)
	}
}

func TestCommandTable(t *testing.T) {
	m := New(nil, Options{})
	type meta struct {
		arity             int
		kind              statemachine.Kind
		first, last, step int
		fast              bool
	}
	w, r := statemachine.KindWrite, statemachine.KindRead
	want := map[string]meta{
		"set": {-3, w, 1, 1, 1, false}, "setnx": {3, w, 1, 1, 1, true},
		"setex": {4, w, 1, 1, 1, false}, "psetex": {4, w, 1, 1, 1, false},
		"getset": {3, w, 1, 1, 1, true}, "getdel": {2, w, 1, 1, 1, true},
		"del": {-2, w, 1, -1, 1, false}, "unlink": {-2, w, 1, -1, 1, true},
		"incr": {2, w, 1, 1, 1, true}, "decr": {2, w, 1, 1, 1, true},
		"incrby": {3, w, 1, 1, 1, true}, "decrby": {3, w, 1, 1, 1, true},
		"append": {3, w, 1, 1, 1, true}, "mset": {-3, w, 1, -1, 2, false},
		"expire": {-3, w, 1, 1, 1, true}, "pexpire": {-3, w, 1, 1, 1, true},
		"expireat": {-3, w, 1, 1, 1, true}, "pexpireat": {-3, w, 1, 1, 1, true},
		"persist": {2, w, 1, 1, 1, true}, "flushall": {-1, w, 0, 0, 0, false},
		"flushdb": {-1, w, 0, 0, 0, false},
		"get":     {2, r, 1, 1, 1, true}, "exists": {-2, r, 1, -1, 1, true},
		"strlen": {2, r, 1, 1, 1, true}, "mget": {-2, r, 1, -1, 1, true},
		"ttl": {2, r, 1, 1, 1, true}, "pttl": {2, r, 1, 1, 1, true},
		"type": {2, r, 1, 1, 1, true}, "dbsize": {1, r, 0, 0, 0, true},
		"scan": {-2, r, 0, 0, 0, false},
	}
	cmds := m.Commands()
	if len(cmds) != len(want) {
		t.Errorf("Commands() has %d entries, want %d", len(cmds), len(want))
	}
	for _, cmd := range cmds {
		wm, ok := want[cmd.Name]
		got := meta{cmd.Arity, cmd.Kind, cmd.FirstKey, cmd.LastKey, cmd.KeyStep, cmd.Fast}
		if !ok || got != wm {
			t.Errorf("%s: got %+v, want %+v (listed %v)", cmd.Name, got, wm, ok)
		}
		if l, ok := m.Lookup(cmd.Name); !ok || l != cmd {
			t.Errorf("Lookup(%q) = %+v, %v", cmd.Name, l, ok)
		}
	}
	if l, ok := m.Lookup("GeT"); !ok || l.Name != "get" {
		t.Errorf("Lookup(GeT) = %+v, %v", l, ok)
	}
	if _, ok := m.Lookup("nosuch"); ok {
		t.Error("Lookup(nosuch) found a command")
	}
}

func TestUnknownCommandClipsArgs(t *testing.T) {
	long := strings.Repeat("x", 200)
	got := unknownCommand(toArgs([]string{long, long, "b"}))
	want := "ERR unknown command '" + long[:128] + "', with args beginning with: '" + long[:128] + "' "
	if got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}
