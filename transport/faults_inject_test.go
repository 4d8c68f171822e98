package transport

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

var flagSeed = flag.Uint64("seed", 0, "Faults tests: replay this seed instead of a random one")

// faultSeed returns the seed for a Faults test and logs how to replay it.
func faultSeed(t *testing.T) uint64 {
	t.Helper()
	seed := *flagSeed
	for seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("Faults seed %d (replay: go test -run '^%s$' -seed %d ./transport/)", seed, t.Name(), seed)
	return seed
}

// arrivals records the sequence number of each message received and when it
// arrived.
type arrivals struct {
	mu   sync.Mutex
	seqs []uint64
	at   []time.Time
}

func (a *arrivals) handle(_ string, p []byte) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seqs = append(a.seqs, binary.BigEndian.Uint64(p))
	a.at = append(a.at, now)
}

func (a *arrivals) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.seqs)
}

func (a *arrivals) snapshot() ([]uint64, []time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.seqs), slices.Clone(a.at)
}

// dropTrial sends n numbered messages from a sender with faults f to a
// receiver and returns the sequence numbers that arrived, once every message
// has either arrived or been counted as dropped by the faults.
func dropTrial(t *testing.T, f Faults, n int) []uint64 {
	t.Helper()
	dir := newDirectory()
	recv := &arrivals{}
	startNode(t, dir, "b", func(c *Config) { c.Handler = recv.handle })
	a := startNode(t, dir, "a", func(c *Config) { c.Faults = &f })
	sendSeq(t, a, "b", 0, uint64(n))
	waitFor(t, 10*time.Second, "every message to arrive or be dropped", func() bool {
		return uint64(recv.count())+a.Stats().MsgsFaultDropped == uint64(n)
	})
	st := a.Stats()
	if st.MsgsDropped != 0 {
		t.Errorf("MsgsDropped = %d, want 0: only the faults should drop", st.MsgsDropped)
	}
	got, _ := recv.snapshot()
	if st.MsgsSent != uint64(len(got)) {
		t.Errorf("MsgsSent = %d, but %d arrived", st.MsgsSent, len(got))
	}
	if !slices.IsSorted(got) {
		t.Errorf("messages arrived out of order: %v", got)
	}
	return got
}

func TestFaultsDropRate(t *testing.T) {
	const n = 2000
	seed := faultSeed(t)
	got := dropTrial(t, Faults{DropRate: 0.5, Seed: seed}, n)
	// 2000 fair coin flips land outside 35%..65% with odds below 1e-40.
	if len(got) < n*35/100 || len(got) > n*65/100 {
		t.Fatalf("%d of %d messages arrived with DropRate 0.5", len(got), n)
	}
	// The same seed drops the same messages again.
	if again := dropTrial(t, Faults{DropRate: 0.5, Seed: seed}, n); !slices.Equal(got, again) {
		t.Fatalf("seed %d delivered %d messages, then %d others on replay", seed, len(got), len(again))
	}
}

func TestFaultsDropAll(t *testing.T) {
	if got := dropTrial(t, Faults{DropRate: 1}, 100); len(got) != 0 {
		t.Fatalf("%d messages arrived with DropRate 1", len(got))
	}
}

// TestFaultsDelayKeepsOrder sends messages whose jitter exceeds the gap
// between them, so their drawn due times are out of order: they must still
// arrive in order, none before its delay.
func TestFaultsDelayKeepsOrder(t *testing.T) {
	const (
		n      = 300
		delay  = 40 * time.Millisecond
		jitter = 30 * time.Millisecond
	)
	dir := newDirectory()
	recv := &arrivals{}
	startNode(t, dir, "b", func(c *Config) { c.Handler = recv.handle })
	a := startNode(t, dir, "a", func(c *Config) {
		c.Faults = &Faults{Delay: delay, Jitter: jitter, Seed: faultSeed(t)}
	})
	sentAt := make([]time.Time, n)
	buf := make([]byte, 16)
	for i := range uint64(n) {
		binary.BigEndian.PutUint64(buf, i)
		sentAt[i] = time.Now()
		if !a.Send("b", buf) {
			t.Fatalf("Send(%d) refused", i)
		}
		if i == n/2 {
			// Let the first half leave, so the writer goes from an empty
			// delay line to a busy one again.
			waitFor(t, 5*time.Second, "the first half to arrive", func() bool { return recv.count() > n/2 })
		}
	}
	waitFor(t, 10*time.Second, "all messages to arrive", func() bool { return recv.count() == n })
	seqs, at := recv.snapshot()
	for i, seq := range seqs {
		if seq != uint64(i) {
			t.Fatalf("arrival %d is message %d: delay reordered messages", i, seq)
		}
		if held := at[i].Sub(sentAt[seq]); held < delay {
			t.Fatalf("message %d arrived %v after Send, before the %v delay", seq, held, delay)
		}
	}
	if st := a.Stats(); st.MsgsSent != n || st.MsgsDropped != 0 || st.MsgsFaultDropped != 0 {
		t.Fatalf("stats %+v, want %d sent and none dropped", st, n)
	}
}

// TestFaultsDelayedDiscardedByDrop checks that messages still on the delay
// line count as dropped when the peer is dropped, and that nothing of them
// is left running at Close (goleak checks in TestMain).
func TestFaultsDelayedDiscardedByDrop(t *testing.T) {
	dir := newDirectory()
	recv := &arrivals{}
	startNode(t, dir, "b", func(c *Config) { c.Handler = recv.handle })
	a := startNode(t, dir, "a", func(c *Config) { c.Faults = &Faults{Delay: time.Hour} })
	sendSeq(t, a, "b", 0, 3)
	a.Drop("b")
	if st := a.Stats(); st.MsgsDropped != 3 || st.MsgsSent != 0 {
		t.Fatalf("after Drop: stats %+v, want 3 dropped and none sent", st)
	}
	if n := recv.count(); n != 0 {
		t.Fatalf("%d delayed messages arrived", n)
	}
}

// TestFaultsDelayQueueBound checks that held-back messages count against
// QueueBytes, so a long delay cannot grow memory without bound.
func TestFaultsDelayQueueBound(t *testing.T) {
	dir := newDirectory()
	a := startNode(t, dir, "a", func(c *Config) {
		c.QueueBytes = 10 * messageFrameLen(100)
		c.Faults = &Faults{Delay: time.Hour}
	})
	sendSeq(t, a, "b", 0, 10)
	if a.Send("b", make([]byte, 100)) {
		t.Fatal("Send beyond QueueBytes accepted while messages are held back")
	}
}

func TestFaultsSeedLogged(t *testing.T) {
	dir := newDirectory()
	a := startNode(t, dir, "a", func(c *Config) { c.Faults = &Faults{DropRate: 0.1} })
	seed := a.faults.cfg.Seed
	if seed == 0 {
		t.Fatal("no seed picked for Faults.Seed 0")
	}
	if want := fmt.Sprintf("seed=%d", seed); !a.log.contains("fault injection on") || !a.log.contains(want) {
		t.Fatalf("log lacks the fault injection line with %s:\n%s", want, a.log)
	}
}

func TestFaultsInvalid(t *testing.T) {
	dir := newDirectory()
	for _, f := range []Faults{
		{DropRate: -0.1},
		{DropRate: 1.5},
		{DropRate: math.NaN()},
		{Delay: -time.Millisecond},
		{Jitter: -time.Millisecond},
	} {
		tr, err := Listen(Config{Name: "a", ClusterID: "test", Listen: "127.0.0.1:0", Resolve: dir.resolve, Faults: &f})
		if err == nil {
			tr.Close()
			t.Errorf("Faults %+v accepted", f)
			continue
		}
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Faults %+v: %v, want ErrInvalidConfig", f, err)
		}
	}
}
