package kv

import (
	"bytes"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/lockstep/lockstep/statemachine"
	"github.com/lockstep/lockstep/storage"
)

// randomCommand draws a write (now and then a read, which Prepare also
// accepts) over a small keyspace, with options, bad arguments and expiries
// that keep keys appearing, expiring and disappearing.
func randomCommand(rng *rand.Rand) []string {
	key := func() string { return "k" + strconv.Itoa(rng.IntN(8)) }
	num := func() string { return strconv.Itoa(rng.IntN(200) - 50) }
	val := func() string {
		if rng.IntN(3) == 0 {
			return num()
		}
		return string(rune('a'+rng.IntN(26))) + strconv.Itoa(rng.IntN(100))
	}
	pick := func(opts ...string) string { return opts[rng.IntN(len(opts))] }
	switch rng.IntN(17) {
	case 0, 1, 2:
		args := []string{"SET", key(), val()}
		for range rng.IntN(3) {
			switch opt := pick("NX", "XX", "GET", "KEEPTTL", "EX", "PX", "EXAT", "PXAT"); opt {
			case "EX":
				args = append(args, opt, strconv.Itoa(rng.IntN(5)))
			case "PX":
				args = append(args, opt, strconv.Itoa(rng.IntN(5000)))
			case "EXAT", "PXAT":
				args = append(args, "PXAT", strconv.FormatInt(baseTime+rng.Int64N(200_000), 10))
			default:
				args = append(args, opt)
			}
		}
		return args
	case 3:
		return []string{pick("SETNX", "GETSET"), key(), val()}
	case 4:
		return []string{"GETDEL", key()}
	case 5:
		return []string{"DEL", key(), key(), key()}
	case 6, 7:
		return []string{pick("INCR", "DECR"), key()}
	case 8:
		return []string{pick("INCRBY", "DECRBY"), key(), num()}
	case 9:
		return []string{"APPEND", key(), val()}
	case 10:
		return []string{"MSET", key(), val(), key(), val()}
	case 11, 12:
		args := []string{pick("EXPIRE", "PEXPIRE"), key(), num()}
		if rng.IntN(2) == 0 {
			args = append(args, pick("NX", "XX", "GT", "LT"))
		}
		return args
	case 13:
		return []string{"PERSIST", key()}
	case 14:
		if rng.IntN(20) == 0 {
			return []string{"FLUSHALL"}
		}
		return []string{"SETEX", key(), strconv.Itoa(rng.IntN(4)), val()}
	case 15:
		return []string{pick("GET", "TTL", "PTTL", "EXISTS", "DBSIZE", "STRLEN"), key()}
	default:
		return []string{"PSETEX", key(), strconv.Itoa(rng.IntN(3000)), val()}
	}
}

// testDeterminism has one machine prepare and apply a random command
// stream and a second machine, on its own store, apply only the Updates.
// Replies and final snapshots must match byte for byte.
func testDeterminism(t *testing.T, newStore storeFactory) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 0))
	// c applies the Updates with their hints of what each key held
	// stripped, so its store reads them: its counters must match.
	a, b, c := newHarness(t, newStore), newHarness(t, newStore), newHarness(t, newStore)
	steps := 3000
	if testing.Short() {
		steps = 500
	}
	errorReplies := 0
	for i := range steps {
		a.env.now += rng.Int64N(1500)
		args := toArgs(randomCommand(rng))
		u, err := a.m.Prepare(args, a.env)
		if err != nil {
			t.Fatalf("step %d Prepare %q: %v", i, args, err)
		}
		seq := uint64(i + 1)
		ra, err := a.m.Apply(seq, u, nil)
		if err != nil {
			t.Fatalf("step %d Apply on a: %v", i, err)
		}
		rb, err := b.m.Apply(seq, bytes.Clone(u), nil)
		if err != nil {
			t.Fatalf("step %d Apply on b: %v", i, err)
		}
		if !bytes.Equal(ra, rb) {
			t.Fatalf("step %d %q: replies differ: %q vs %q", i, args, ra, rb)
		}
		if _, err := c.m.Apply(seq, stripHints(t, u), nil); err != nil {
			t.Fatalf("step %d Apply on c: %v", i, err)
		}
		ka, ea := a.m.Keyspace()
		kb, eb := b.m.Keyspace()
		kc, ec := c.m.Keyspace()
		if ka != kb || ea != eb || ka != kc || ea != ec {
			t.Fatalf("step %d %q: keys/expires %d/%d, replica %d/%d, replica reading every key %d/%d", i, args, ka, ea, kb, eb, kc, ec)
		}
		if len(ra) == 0 || (ra[0] == '-' && bytes.Contains(ra, []byte("unknown command"))) {
			t.Fatalf("step %d %q: bad reply %q", i, args, ra)
		}
		if ra[0] == '-' {
			errorReplies++
		}
		if i%500 == 499 {
			if sa, sb := a.snapshot(), b.snapshot(); !bytes.Equal(sa, sb) {
				t.Fatalf("step %d: snapshots differ (%d vs %d bytes)", i, len(sa), len(sb))
			}
		}
	}
	sa, sb := a.snapshot(), b.snapshot()
	if !bytes.Equal(sa, sb) {
		t.Fatalf("snapshots differ (%d vs %d bytes)", len(sa), len(sb))
	}
	if a.m.AppliedSeq() != uint64(steps) || b.m.AppliedSeq() != uint64(steps) {
		t.Fatalf("AppliedSeq = %d, %d; want %d", a.m.AppliedSeq(), b.m.AppliedSeq(), steps)
	}
	keys, _ := a.m.Keyspace()
	t.Logf("%d steps, %d error replies, %d keys at the end, snapshot %d bytes", steps, errorReplies, keys, len(sa))
	if errorReplies > steps/3 {
		t.Fatalf("%d of %d commands failed; the generator exercises too little", errorReplies, steps)
	}
}

// stripHints re-encodes u without its ops' hints (storage.Op.Prev).
func stripHints(t *testing.T, u []byte) []byte {
	t.Helper()
	reply, ops, err := decodeAll(u)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ops {
		ops[i].Prev = storage.PrevUnknown
	}
	return encodeUpdate(reply, ops)
}

// fixedEnv is an Env whose every source is constant, for checking that
// Prepare's output depends on nothing else.
type fixedEnv struct{ now int64 }

func (e fixedEnv) NowMillis() int64 { return e.now }
func (e fixedEnv) Rand() uint64     { return 42 }

var _ statemachine.Env = fixedEnv{}

// TestPrepareIsPure checks that preparing the same command twice against
// the same state yields identical Updates and changes nothing by itself.
func TestPrepareIsPure(t *testing.T) {
	h := newHarness(t, memStore)
	h.do("SET", "k", "5", "EX", "100")
	for _, cmd := range [][]string{
		{"INCR", "k"}, {"SET", "k", "v", "PX", "1000", "GET"}, {"EXPIRE", "k", "7", "GT"},
		{"DEL", "k", "x"}, {"FLUSHALL"}, {"APPEND", "k", "zz"},
	} {
		u1, err1 := h.m.Prepare(toArgs(cmd), fixedEnv{baseTime})
		u2, err2 := h.m.Prepare(toArgs(cmd), fixedEnv{baseTime})
		if err1 != nil || err2 != nil || !bytes.Equal(u1, u2) {
			t.Fatalf("%q: Prepare twice = %x, %v / %x, %v", cmd, u1, err1, u2, err2)
		}
	}
	if got := h.do("GET", "k"); got != rBulk("5") {
		t.Fatalf("GET after Prepare only = %q; Prepare changed state", got)
	}
}
