package replicatest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/lockstep/lockstep/internal/faultfs"
	"github.com/lockstep/lockstep/replica"
	"github.com/lockstep/lockstep/sim"
	"github.com/lockstep/lockstep/storage"
)

// TestDiskFaultFailsOver runs concurrent clients against a group whose
// replicas keep their state in Pebble, each on a disk of its own, and
// breaks one member's disk mid-load: its fsyncs fail, or it is full. The
// member must stop (its replica fails with ErrStorage) without having
// acknowledged anything it could not persist, and the group must go on
// without it once the test, as coordinator, reconfigures it away.
//
// Every disk is a strict in-memory filesystem, so at the end the test
// crashes them all, keeping only what was fsynced, and checks that every
// write a client saw acknowledged is on each survivor's disk, and on the
// failed member's disk if it was acknowledged before the failover. A
// member that acknowledged a write whose fsync failed would be caught
// there. The clients' history must also be linearizable, and the
// survivors must hold equal state.
func TestDiskFaultFailsOver(t *testing.T) {
	type breakage struct {
		fault  faultfs.Fault
		victim string
	}
	for _, protocol := range protocols {
		cases := []breakage{{faultfs.Sync, "r1"}, {faultfs.Full, "r1"}}
		if protocol == replica.ProtocolChain {
			cases = append(cases, breakage{faultfs.Sync, "r2"}, breakage{faultfs.Sync, "r3"})
		}
		for _, b := range cases {
			name := fmt.Sprintf("%s/%s-%s", protocol, strings.ReplaceAll(b.fault.String(), " ", "-"), b.victim)
			t.Run(name, func(t *testing.T) { diskFaultFailover(t, protocol, b.fault, b.victim) })
		}
	}
}

func diskFaultFailover(t *testing.T, protocol string, fault faultfs.Fault, victim string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	seed := testSeed(t)
	members := []string{"r1", "r2", "r3"}
	disks := map[string]*disk{}
	for _, name := range members {
		disks[name] = newDisk()
	}
	c := startWith(t, ctx, Options{Protocol: protocol, Seed: seed, Names: members,
		NewStore: func(name string) (storage.Store, error) { return disks[name].open() }})

	l := &load{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	const clients = 4
	for i := range clients {
		wg.Go(func() { l.run(ctx, c, i, rand.New(rand.NewPCG(seed, uint64(i))), stop) })
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad() // on an early failure
	if err := WaitFor(ctx, "writes before the fault", func() bool { return l.acks.Load() >= 30 }); err != nil {
		t.Fatal(err)
	}

	disks[victim].fs.Set(fault)
	v := c.Node(victim)
	if err := WaitFor(ctx, victim+" to fail", func() bool { return v.Replica.Err() != nil }); err != nil {
		t.Fatal(err)
	}
	if err := v.Replica.Err(); !errors.Is(err, replica.ErrStorage) {
		t.Fatalf("%s failed with %v, want ErrStorage", victim, err)
	}
	if disks[victim].fs.Injected() == 0 {
		t.Fatalf("%s failed, but its disk never failed an operation", victim)
	}

	// The coordinator sees the failed node leave and removes it.
	rest := slices.DeleteFunc(slices.Clone(members), func(n string) bool { return n == victim })
	l.failover.Store(true)
	reconfigure(t, ctx, c, View{Members: rest, To: rest})
	before := l.acks.Load()
	if err := WaitFor(ctx, "writes after the failover", func() bool { return l.acks.Load() >= before+30 }); err != nil {
		t.Fatal(err)
	}
	stopLoad()

	expect(t, "write at the new "+rest[0], "+OK")(c.Node(rest[0]).Write(ctx, "SET", "after", "1"))
	expect(t, "read at the new "+reader(protocol, rest), "$1")(c.Node(reader(protocol, rest)).Read(ctx, "GET", "after"))
	checkHistory(t, &l.rec, seed)
	survivors := []*Node{c.Node(rest[0]), c.Node(rest[1])}
	if err := WaitFor(ctx, "equal digests on the survivors", func() bool { return digestsEqual(ctx, survivors) }); err != nil {
		t.Fatal(err)
	}
	checkDurable(t, c, disks, l, victim)
}

// checkDurable crashes every disk, keeping only what was fsynced, and
// checks that each holds every write acknowledged while its node was a
// member.
func checkDurable(t *testing.T, c *Cluster, disks map[string]*disk, l *load, victim string) {
	t.Helper()
	for _, d := range disks {
		d.mem.SetIgnoreSyncs(true) // closing the stores persists nothing more
	}
	c.Close()
	for name, d := range disks {
		st := d.crashed(t)
		lost := 0
		for _, w := range l.acked {
			if name == victim && !w.beforeFailover {
				continue
			}
			e, ok, err := st.Get([]byte(w.key))
			if err != nil {
				t.Fatal(err)
			}
			if !ok || string(e.Value) != w.value {
				if lost++; lost <= 5 {
					t.Errorf("%s lost %s=%s in a crash (holds %q, present %v): it was acknowledged", name, w.key, w.value, e.Value, ok)
				}
			}
		}
		if lost > 0 {
			t.Errorf("%s lost %d of %d acknowledged writes", name, lost, len(l.acked))
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// disk is a node's data directory: a strict in-memory filesystem, which
// a crash takes back to what was fsynced, behind a faultfs the test
// breaks.
type disk struct {
	mem *vfs.MemFS
	fs  *faultfs.FS
}

func newDisk() *disk {
	mem := vfs.NewStrictMem()
	return &disk{mem: mem, fs: faultfs.Wrap(mem)}
}

func (d *disk) open() (storage.Store, error) {
	return storage.OpenPebble("data", storage.PebbleOptions{FS: d.fs, CacheSize: 1 << 20})
}

// crashed loses what the closed store never fsynced and opens the rest on
// a healthy disk.
func (d *disk) crashed(t *testing.T) *storage.Pebble {
	t.Helper()
	d.mem.ResetToSyncedState()
	d.mem.SetIgnoreSyncs(false)
	st, err := storage.OpenPebble("data", storage.PebbleOptions{FS: d.mem, CacheSize: 1 << 20})
	if err != nil {
		t.Fatalf("reopen after a crash: %v", err)
	}
	return st
}

// load is the clients of a disk fault test: what they did (rec), which
// writes were acknowledged, and whether before the failover began.
type load struct {
	rec      recorder
	failover atomic.Bool
	acks     atomic.Int64
	mu       sync.Mutex
	acked    []ackedWrite
}

// ackedWrite is a SET of a key written once, that a client saw succeed.
type ackedWrite struct {
	key, value     string
	beforeFailover bool
}

// run makes requests until stop is closed, each to a replica, key and
// operation rnd picks: half are SETs of a key of their own (whose
// durability checkDurable can judge), the rest SET or GET a shared key,
// which makes the history worth checking. Every value written is unique.
func (l *load) run(ctx context.Context, c *Cluster, client int, rnd *rand.Rand, stop <-chan struct{}) {
	nodes := c.Nodes()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		n := nodes[rnd.IntN(len(nodes))]
		value := fmt.Sprintf("c%d-%d", client, i)
		in := sim.KVInput{Op: sim.KVPut, Key: "own-" + value, Value: value}
		switch rnd.IntN(4) {
		case 0:
			in = sim.KVInput{Op: sim.KVPut, Key: []string{"a", "b"}[rnd.IntN(2)], Value: value}
		case 1:
			in = sim.KVInput{Op: sim.KVGet, Key: []string{"a", "b"}[rnd.IntN(2)]}
		}
		args := []string{"GET", in.Key}
		if in.Op == sim.KVPut {
			args = []string{"SET", in.Key, in.Value}
		}
		id := l.rec.invoke(client, in)
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		v, err := n.Do(rctx, args...)
		cancel()
		var out *sim.KVOutput
		if isValue(v, err) {
			out = &sim.KVOutput{Value: string(v.Str)}
			if in.Op == sim.KVPut {
				l.ack(ackedWrite{key: in.Key, value: in.Value, beforeFailover: !l.failover.Load()})
			}
		}
		l.rec.finish(id, out, in.Op == sim.KVGet)
	}
}

// ack records an acknowledged write; only writes of a key of their own
// are kept for checkDurable.
func (l *load) ack(w ackedWrite) {
	l.acks.Add(1)
	if !strings.HasPrefix(w.key, "own-") {
		return
	}
	l.mu.Lock()
	l.acked = append(l.acked, w)
	l.mu.Unlock()
}
