package nodesim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/dedup"
	"github.com/lockstep/lockstep/kv"
	"github.com/lockstep/lockstep/replica"
	"github.com/lockstep/lockstep/sim"
)

// errNoWait is the simulated Sleep: an event cannot wait, so a snapshot
// transfer that would pause between attempts gives up instead.
var errNoWait = errors.New("nodesim: no waiting inside a simulated event")

// errUnreachable is a snapshot source a node cannot reach.
var errUnreachable = errors.New("nodesim: peer unreachable")

// tickMillis is the replicas' tick.
const tickMillis = 10

// node is one server process: a replica, its store, its view of its
// lease, and the faults it suffers.
type node struct {
	w    *World
	name string
	inc  string
	rep  *replica.Replica
	disk *disk
	// kept is what the process kept of its disk's state; cleanJoined is
	// set once a process that kept a clean stop's state is a member.
	kept        keptAs
	cleanJoined bool

	// stop is its graceful stop in progress (nil: none); inFlight counts
	// the client commands it has read whose replies wait for a commit.
	stop     *stopping
	inFlight int

	down      bool  // crashed (until restarted in a new node)
	pauseTill int64 // paused until this step (a GC pause, SIGSTOP)
	inbox     []sim.Packet[[]byte]
	phase     int64 // its ticks fall on steps = phase mod tickMillis

	slow     int64 // extra delay of its links, in ms, until slowTill
	slowTill int64
	peerCut  bool // cut off from every other replica
	coordCut bool // cut off from the coordinator

	// reg is its coordinator session: the real coord.Registrar, on a
	// backend to the simulated coordinator, driven by session().
	reg        *coord.Registrar
	registered bool
	giveUpAt   int64 // while another process holds the name: when to exit (0: not waiting)
	nextRenew  int64
	recheck    bool // a change of its registration may have been missed
	// Its clock: off from the world's by skew milliseconds, and running
	// drift parts per million fast or slow (within the fencing margin).
	skew  int64
	drift int64

	watchDue  int64  // a configuration is on its way (0: none)
	seenEpoch uint64 // the newest configuration delivered

	published coord.NodeInfo
	pubAt     int64
}

// keptAs says what a starting process keeps of its disk's state, as
// cmd/lockstep's openReplicaStore decides.
type keptAs int

const (
	keptNothing     keptAs = iota // a new disk
	keptMember                    // a member's state, which the group may re-form from (coord.KeepData)
	keptClean                     // a state a clean stop left all committed (coord.KeepClean)
	keptCleanMember               // both: a clean stop's state the configuration still names a member's
)

// startNode starts a new process under name on d, a new incarnation that
// registers with the coordinator; kept says what it keeps of d's state.
func (w *World) startNode(name string, d *disk, kept keptAs) *node {
	n := &node{w: w, name: name, inc: fmt.Sprintf("%s-%x", name, w.rng.Uint32()), phase: w.rng.Int64N(tickMillis),
		skew: w.rng.Int64N(10_000) - 5_000, drift: w.rng.Int64N(40_001) - 20_000, disk: d, kept: kept}
	machine, err := dedup.Wrap(kv.New(d, kv.Options{Rand: rand.New(rand.NewPCG(w.rng.Uint64(), 1))}), 0)
	if err != nil {
		panic(err) // a memory store cannot fail to load
	}
	rep, err := replica.New(replica.Options{
		Name: name, Incarnation: n.inc, Machine: machine, Store: d, Protocol: w.p.Protocol,
		SyncBeforeSend: true, Recovered: kept == keptMember || kept == keptCleanMember, Committed: kept == keptClean || kept == keptCleanMember,
		Core: replica.CoreOptions{Window: w.p.Window, MaxBatch: 8, RetainBytes: w.p.RetainBytes,
			CheckpointInterval: 20 * time.Millisecond, CheckpointChunk: 16},
		Tick:         tickMillis * time.Millisecond,
		WaitTimeout:  2 * time.Second,
		Now:          n.Now,
		Logger:       slog.New(slog.DiscardHandler),
		Rand:         rand.New(rand.NewPCG(w.rng.Uint64(), 2)),
		Forward:      noForward{},
		Spawn:        func(f func()) { w.after(1+w.rng.Int64N(5), func() { n.spawned(f) }) },
		Sleep:        func(context.Context, time.Duration) error { return errNoWait },
		NoWindowWait: true,
	})
	if err != nil {
		panic(err) // the parameters are the simulator's own
	}
	rep.Attach(sender{n}, fetcher{n}, n)
	n.rep = rep
	switch kept {
	case keptMember, keptCleanMember:
		w.logf("%s started as %s on its kept data (applied %d)", name, n.inc, d.AppliedSeq())
	case keptClean:
		w.logf("%s started as %s on its clean-stop state (applied %d)", name, n.inc, d.AppliedSeq())
	default:
		w.logf("%s started as %s", name, n.inc)
	}
	return n
}

// simCluster is the cluster every simulated process registers in.
const simCluster = "sim"

func (n *node) up() bool { return !n.down }

// member is the process as a configuration names it.
func (n *node) member() coord.Member { return coord.Member{Name: n.name, Incarnation: n.inc} }
func (n *node) paused() bool         { return n.w.now < n.pauseTill }

// Valid is the replica's lease check (replica.Lease): the session's.
func (n *node) Valid() bool { return n.registered && n.reg.Valid() }

// clock is the node's own reading, in milliseconds, of the world's time.
func (n *node) clock() int64 { return n.clockAt(n.w.now) }

func (n *node) clockAt(t int64) int64 { return n.skew + t + t*n.drift/1_000_000 }

// Now is the node's clock as its replica reads it.
func (n *node) Now() time.Time { return epoch0.Add(time.Duration(n.clock()) * time.Millisecond) }

// spawned runs background work the replica started (a snapshot fetch)
// if the process still runs, then carries out its effects.
func (n *node) spawned(f func()) {
	if n.down {
		return
	}
	if n.paused() {
		n.w.agenda.Add(n.pauseTill, func() { n.spawned(f) })
		return
	}
	f()
	n.rep.Flush(n.w.ctx)
}

// step runs one millisecond of the process: messages held during a
// pause, a tick, a checkpoint epoch, and its coordinator session; or, in
// a graceful stop, the stop's next step.
func (n *node) step() error {
	if n.down || n.paused() {
		return nil
	}
	w := n.w
	if len(n.inbox) > 0 {
		for _, pk := range n.inbox {
			n.rep.Deliver(pk.From, pk.Msg)
		}
		n.inbox = nil
		n.rep.BurstDone("")
	}
	if !n.retiring() && (w.now+n.phase)%tickMillis == 0 {
		n.rep.TickAt(w.ctx, n.Now())
	}
	if !n.retiring() && (w.now+n.phase)%20 == 0 {
		n.rep.CloseEpoch(w.ctx)
	}
	if err := n.rep.Err(); err != nil {
		return n.replicaFailed(err)
	}
	if n.retiring() {
		n.retireStep()
		return nil
	}
	n.noteCleanJoin()
	n.session()
	if n.stop != nil && !n.down {
		n.drain()
	}
	return nil
}

// replicaFailed ends a process whose replica stopped with err. A failed
// fsync stops a replica, and so does kept state the group re-formed
// without; the process exits and is restarted. Any other error, a storage
// error without a disk fault included, means it was handed an update it
// could not apply.
func (n *node) replicaFailed(err error) error {
	diskFault := errors.Is(err, replica.ErrStorage) && n.disk.failed
	if !diskFault && !errors.Is(err, replica.ErrStaleState) {
		return sim.Violation("%s (%s) stopped: %v", n.name, n.inc, err)
	}
	if errors.Is(err, replica.ErrStorage) {
		n.w.stats.Inc("replica stopped: storage")
	} else {
		n.w.stats.Inc("replica stopped: stale state")
	}
	n.exit(err.Error())
	return nil
}

// exit ends the process on its own account: its session ended, or its
// name is held by another process. A server process is restarted, as a
// supervisor would; a second process under a live name just ends.
func (n *node) exit(why string) {
	if n.w.isExtra(n) {
		n.down = true
		n.w.dropExtra(n)
		n.w.logf("%s (%s) exited: %s", n.name, n.inc, why)
		return
	}
	n.crash(why)
}

// crash ends the process. Its watchdog fences it at once, unless the
// fault took the watchdog too.
func (n *node) crash(why string) {
	if n.down {
		return
	}
	n.down = true
	n.inbox = nil
	n.disk.crash()
	n.w.logf("%s (%s) crashed: %s", n.name, n.inc, why)
	n.w.stats.Inc("crash")
	if n.w.rng.IntN(3) > 0 {
		n.w.after(1+n.w.rng.Int64N(3), func() { n.w.coord.fence(n) })
	}
	n.w.restartLater(n, 200+n.w.rng.Int64N(1500))
}

// session is what coord.Session's goroutines and the server's loops do
// with the registration, one step at a time: grant a lease, register the
// name (waiting while another process holds it, then giving up), renew,
// read the registration after a missed watch, and publish status. A
// session that ends (lease lost, registration gone) ends the process, as
// the server exits when its session is done.
func (n *node) session() {
	w := n.w
	switch {
	case n.reg == nil:
		if w.now >= n.nextRenew {
			n.grant()
		}
	case n.reg.Err() != nil:
		n.exit(n.reg.Err().Error())
	case !n.registered:
		if w.now >= n.nextRenew {
			n.register()
		}
	default:
		if w.now >= n.nextRenew {
			n.renew()
		}
		if n.recheck && w.coord.reaches(n) {
			n.recheck = false
			_, _, _ = n.reg.Check(w.ctx)
		}
		if (w.now+n.phase)%50 == 0 {
			n.publish()
		}
	}
}

// grant starts the session: NewRegistrar, retried while the coordinator
// cannot be reached.
func (n *node) grant() {
	reg, err := coord.NewRegistrar(n.w.ctx, backend{n.w.coord, n}, coord.SessionConfig{
		Cluster: simCluster, Group: "g", TTL: n.w.p.TTL, Now: n.Now,
		Node: n.info(coord.StateStarting),
	})
	if err != nil {
		n.nextRenew = n.w.now + 100
		return
	}
	n.reg = reg
	n.w.coord.nodesPfx = strings.TrimSuffix(reg.Key(), n.name)
	n.register()
}

// register is one attempt of coord.Session's registration: while
// another process holds the name it renews its own lease and tries again
// until the wait runs out, then exits with the error a real server
// prints.
func (n *node) register() {
	w := n.w
	ttl := w.p.TTL.Milliseconds()
	rev, h, err := n.reg.Register(w.ctx)
	switch {
	case err != nil:
		n.nextRenew = w.now + 100
	case h == nil:
		n.registered = true
		n.nextRenew = w.now + ttl/3
		w.logf("%s (%s) registered at revision %d", n.name, n.inc, rev)
		w.adopt(n)
	default:
		if n.giveUpAt == 0 {
			n.giveUpAt = w.now + n.reg.RegisterWait(w.ctx, h).Milliseconds()
			w.logf("%s (%s) waits for %s to end", n.name, n.inc, h.Info.Incarnation)
		}
		if w.now >= n.giveUpAt {
			w.stats.Inc("name in use")
			n.exit(n.reg.NameInUse(h, n.reg.RegisterWait(w.ctx, h)).Error())
			return
		}
		_ = n.reg.Renew(w.ctx)
		n.nextRenew = w.now + 100
	}
}

// renew is coord.Session's renewal: every TTL/3, sooner after a failure.
func (n *node) renew() {
	ttl := n.w.p.TTL.Milliseconds()
	if err := n.reg.Renew(n.w.ctx); err != nil {
		n.nextRenew = n.w.now + ttl/9
		return
	}
	n.nextRenew = n.w.now + ttl/3
}

// publish reports the replica's state when coord.PublishDue says so, as
// the server's publishStatus does.
func (n *node) publish() {
	st := n.rep.Status()
	info := n.info(st.State)
	info.Role, info.Epoch, info.Applied, info.Complete, info.Lag, info.Commit = st.Role, st.Epoch, st.Applied, st.Complete, st.Lag, st.Commit
	if !coord.PublishDue(n.published, info, time.Duration(n.w.now-n.pubAt)*time.Millisecond) {
		return
	}
	if n.reg.UpdateInfo(n.w.ctx, info) == nil {
		n.published, n.pubAt = info, n.w.now
	}
}

// info is the node's record in state, as a server publishes it.
func (n *node) info(state string) coord.NodeInfo {
	info := coord.NodeInfo{Name: n.name, Incarnation: n.inc, State: state, DataID: n.disk.id}
	if n.kept != keptNothing {
		info.Durable = n.rep.Status().Applied
	}
	return info
}

// sender is a node's replica.Sender.
type sender struct{ n *node }

func (s sender) Send(to string, payload []byte) bool {
	n := s.n
	w := n.w
	if n.down {
		return false
	}
	dst := w.byName(to)
	if dst == nil || n.peerCut || dst.peerCut {
		return false
	}
	if w.p.Loss > 0 && w.rng.Float64() < w.p.Loss && w.faulty {
		w.stats.Inc("msg dropped")
		return true // lost on the way: the sender cannot tell
	}
	msg := bytes.Clone(payload)
	extra := max(n.slowBy(), dst.slowBy())
	if extra == 0 && w.slowLinks[n.name+">"+to] <= w.now {
		return w.net.Send(w.now, n.name, to, msg)
	}
	// A slow link: later messages wait behind earlier ones, as on TCP.
	at := max(w.now+extra, w.slowLinks[n.name+">"+to])
	w.slowLinks[n.name+">"+to] = at
	w.agenda.Add(at, func() {
		if !n.down && !n.peerCut && !dst.peerCut {
			w.net.Send(w.now, n.name, to, msg)
		}
	})
	return true
}

// slowBy is the extra delay of the node's links while it is slow.
func (n *node) slowBy() int64 {
	if n.w.now < n.slowTill {
		return n.slow
	}
	return 0
}

// fetcher is a node's replica.SnapshotFetcher: the source serves its
// snapshot at once if it is up and reachable.
type fetcher struct{ n *node }

func (f fetcher) OpenStream(ctx context.Context, to string, req []byte) (io.ReadCloser, error) {
	n := f.n
	src := n.w.byName(to)
	if src == nil || src.down || src.paused() || n.peerCut || src.peerCut {
		n.w.stats.Inc("snapshot fetch failed")
		return nil, fmt.Errorf("%w: %s", errUnreachable, to)
	}
	var buf bytes.Buffer
	if n.w.faulty && n.w.rng.IntN(4) == 0 {
		// The transfer breaks part way: the joiner has some of it.
		cut := &cutWriter{w: &buf, left: n.w.rng.IntN(256)}
		_ = src.rep.ServeSnapshot(ctx, n.name, req, cut)
		n.w.stats.Inc("snapshot transfer broken")
		return io.NopCloser(io.MultiReader(&buf, errReader{})), nil
	}
	if err := src.rep.ServeSnapshot(ctx, n.name, req, &buf); err != nil {
		n.w.stats.Inc("snapshot refused")
		return nil, err
	}
	n.w.stats.Inc("snapshot served")
	return io.NopCloser(&buf), nil
}

// noForward answers for the forwarder: a request this replica cannot
// answer goes back to the client as TRYAGAIN, and the simulated client
// finds the right node itself (its routes may be stale).
type noForward struct{}

func (noForward) Write(_ string, _ uint64, _ [][]byte, out []byte) ([]byte, error) {
	return append(out, "-TRYAGAIN nodesim: not forwarded\r\n"...), nil
}

func (noForward) Read(_ [][]byte, out []byte) ([]byte, error) {
	return append(out, "-TRYAGAIN nodesim: not forwarded\r\n"...), nil
}

// cutWriter takes left bytes, then fails like a broken connection.
type cutWriter struct {
	w    io.Writer
	left int
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if len(p) > c.left {
		n, _ := c.w.Write(p[:c.left])
		c.left = 0
		return n, errUnreachable
	}
	c.left -= len(p)
	return c.w.Write(p)
}

// errReader fails every read, as a connection reset mid-transfer does.
type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errUnreachable }
