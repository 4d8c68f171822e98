package e2e

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockstep/lockstep/internal/faultproxy"
	"github.com/lockstep/lockstep/internal/proctest"
)

// replicationFaults are the hidden server flags that make the network
// between the servers of a group unreliable; --fault-seed is added per node.
var replicationFaults = []string{"--fault-drop-rate", "0.1", "--fault-delay", "2ms", "--fault-jitter", "3ms"}

// e2eSeed returns the seed of a randomized process test: LOCKSTEP_SEED if
// set, else one from the clock, logged with the command that replays it.
// Process timing is the machine's, so a replay repeats the fault
// decisions, not the exact interleaving.
func e2eSeed(t *testing.T) uint64 { return proctest.Seed(t, "./e2e/") }

// subSeed derives the i-th component's seed from seed, never 0 (which
// would make a component pick its own random seed, unreplayable).
func subSeed(seed uint64, i int) uint64 {
	s := seed + uint64(i)*0x9E3779B97F4A7C15
	if s == 0 {
		s = 1
	}
	return s
}

// startFaultyCluster starts a primary-backup group whose servers drop and
// delay their outgoing replication messages, with fault seeds derived
// from seed.
func startFaultyCluster(t *testing.T, size int, protocol string, seed uint64) *cluster {
	t.Helper()
	c := startClusterArgs(t, size, protocol, func(name string) []string {
		i, _ := strconv.Atoi(strings.TrimPrefix(name, "n"))
		return append([]string{"--fault-seed", strconv.FormatUint(subSeed(seed, i), 10)}, replicationFaults...)
	})
	for name, p := range c.procs {
		if !strings.Contains(p.Log(), "fault injection on") {
			t.Fatalf("%s started without replication faults:\n%s", name, p.Log())
		}
	}
	return c
}

// appender is one retrying client: it numbers its lockstep.req requests
// 1, 2, 3... and sends each, one at a time, through its fault proxy until
// it is answered, reconnecting after every failure.
type appender struct {
	id      string
	addr    string // its fault proxy
	rc      *redis.Client
	num     uint64 // number of the request last sent
	retries int
}

// req sends the next request, args being the command, and returns its
// integer reply. Lost connections and "try again" answers are retried with
// the same number; any other error reply is a wrong answer and returned.
func (a *appender) req(ctx context.Context, args ...any) (int64, error) {
	a.num++
	cmd := append([]any{"lockstep.req", a.id, a.num}, args...)
	for {
		if a.rc == nil {
			a.rc = redis.NewClient(&redis.Options{Addr: a.addr, MaxRetries: -1, PoolSize: 1, Protocol: 2,
				DisableIdentity: true, DialTimeout: 2 * time.Second, ReadTimeout: 10 * time.Second})
		}
		n, err := a.rc.Do(ctx, cmd...).Int64()
		if err == nil {
			return n, nil
		}
		var reply redis.Error
		isReply := errors.As(err, &reply)
		if ctx.Err() != nil || (isReply && !transient(err)) {
			return 0, fmt.Errorf("%s request %d %v: %w", a.id, a.num, args, err)
		}
		a.retries++
		a.rc.Close()
		a.rc = nil
		if isReply { // the group is between primaries: give it a moment
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// transient reports whether a server's error reply means "not now": no
// primary serving, or a forward that found none in time.
func transient(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "TRYAGAIN") || strings.Contains(msg, "not serving")
}

func (a *appender) close() {
	if a.rc != nil {
		a.rc.Close()
	}
}

// token is client id's i-th token, as it appears in the logs.
func token(id string, i int) string { return id + ":" + strconv.Itoa(i) + ";" }

// run appends the client's tokens 1..n to the shared key "log" and to its
// own key, counting completed tokens in done. APPEND replies the new
// length, so each reply on its own key is checked as it comes: a retry
// applied twice, or answered with another request's reply, shows there.
func (a *appender) run(ctx context.Context, n int, done *atomic.Int64) error {
	own := 0
	for i := 1; i <= n; i++ {
		tok := token(a.id, i)
		if _, err := a.req(ctx, "APPEND", "log", tok); err != nil {
			return err
		}
		got, err := a.req(ctx, "APPEND", "own/"+a.id, tok)
		if err != nil {
			return err
		}
		own += len(tok)
		if got != int64(own) {
			return fmt.Errorf("%s: APPEND of token %d to its own key replied length %d, want %d", a.id, i, got, own)
		}
		done.Add(1)
	}
	return nil
}

// TestAppendsExactlyOnceThroughUnreliableNetwork runs clients that
// append numbered tokens through fault proxies (lost requests, and lost
// replies to requests the server ran) in front of every node, to a
// primary-backup (and a checkpoint) group whose own replication network
// drops and delays messages, and kills the primary halfway. Each client retries every
// request with its number until answered, so each token must be applied
// exactly once and in the client's order: each client's own key holds
// exactly its tokens, the shared key holds every token once with each
// client's in order, and once the old primary has rejoined, all three
// replicas are byte-identical.
func TestAppendsExactlyOnceThroughUnreliableNetwork(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: a failover with real processes")
	}
	for _, proto := range []string{pbProto, cpProto} {
		t.Run(proto, func(t *testing.T) { appendsThroughUnreliableNetwork(t, proto) })
	}
}

func appendsThroughUnreliableNetwork(t *testing.T, protocol string) {
	const clients, perClient = 4, 150
	seed := e2eSeed(t)
	c := startFaultyCluster(t, 3, protocol, seed)
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpLogs()
		}
	})
	primary := c.status().byRole("primary")
	proxies, targets := startProxies(t, c, clients, seed)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	var done, running atomic.Int64
	var wg sync.WaitGroup
	apps := make([]*appender, clients)
	errs := make([]error, clients)
	for i := range apps {
		apps[i] = &appender{id: "c" + strconv.Itoa(i), addr: proxies[i].Addr()}
		wg.Add(1)
		running.Add(1)
		go func() {
			defer wg.Done()
			defer running.Add(-1)
			defer apps[i].close()
			errs[i] = apps[i].run(ctx, perClient, &done)
		}()
	}
	defer func() { cancel(); wg.Wait() }()

	// A client that gives up (a wrong answer) ends the wait too: its
	// error is reported below, with the servers' logs.
	proctest.Eventually(t, 30*time.Second, "half the tokens appended", func() bool {
		return done.Load() >= clients*perClient/2 || running.Load() < clients
	})
	c.kill(primary)
	survivors := retarget(c, proxies, targets, primary)
	t.Logf("killed primary %s after %d tokens; clients go on through %v", primary, done.Load(), survivors)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	checkProxyFaults(t, proxies, apps)
	checkReplicationFaults(t, c, survivors)
	checkAppends(t, c.procs[survivors[0]].Addr, clients, perClient)
	// The old primary comes back empty and must catch up over the same
	// unreliable network.
	c.start(primary)
	c.waitRole(primary, "backup")
	c.waitIdentical(nodeName(1), nodeName(2), nodeName(3))
}

// startProxies puts a fault proxy in front of each client's node, the
// nodes taken in turn, and returns the proxies and their nodes' names.
func startProxies(t *testing.T, c *cluster, n int, seed uint64) ([]*faultproxy.Proxy, []string) {
	t.Helper()
	proxies := make([]*faultproxy.Proxy, n)
	targets := make([]string, n)
	for i := range proxies {
		targets[i] = nodeName(1 + i%c.size)
		p, err := faultproxy.Start(context.Background(), faultproxy.Options{Target: c.procs[targets[i]].Addr,
			DropRequest: 0.1, DropReply: 0.1, Jitter: time.Millisecond, Seed: subSeed(seed, 100+i)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		proxies[i] = p
	}
	return proxies, targets
}

// retarget points the proxies in front of the dead node at the survivors
// and returns the survivors' names.
func retarget(c *cluster, proxies []*faultproxy.Proxy, targets []string, dead string) []string {
	var survivors []string
	for i := 1; i <= c.size; i++ {
		if n := nodeName(i); n != dead {
			survivors = append(survivors, n)
		}
	}
	for i, p := range proxies {
		if targets[i] == dead {
			targets[i] = survivors[i%len(survivors)]
			p.SetTarget(c.procs[targets[i]].Addr)
		}
	}
	return survivors
}

// checkProxyFaults fails the test unless the proxies really lost requests
// and replies, without which retries would prove nothing.
func checkProxyFaults(t *testing.T, proxies []*faultproxy.Proxy, apps []*appender) {
	t.Helper()
	var sum faultproxy.Stats
	for _, p := range proxies {
		st := p.Stats()
		sum.Forwarded += st.Forwarded
		sum.RequestsDropped += st.RequestsDropped
		sum.RepliesDropped += st.RepliesDropped
	}
	retries := 0
	for _, a := range apps {
		retries += a.retries
	}
	t.Logf("proxies: %+v; client retries: %d", sum, retries)
	if sum.RequestsDropped == 0 || sum.RepliesDropped == 0 {
		t.Fatalf("the proxies lost no requests or no replies (%+v): the test proved nothing", sum)
	}
}

// checkReplicationFaults checks that the servers' links did lose messages
// (INFO replication's lockstep_peer_msgs_fault_dropped), so the
// replication ran over an unreliable network.
func checkReplicationFaults(t *testing.T, c *cluster, names []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	total := 0
	for _, name := range names {
		rc := redis.NewClient(&redis.Options{Addr: c.procs[name].Addr})
		info, err := rc.Info(ctx, "replication").Result()
		rc.Close()
		if err != nil {
			t.Fatalf("INFO replication on %s: %v", name, err)
		}
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "lockstep_peer_msgs_fault_dropped:"); ok {
				n, _ := strconv.Atoi(v)
				total += n
			}
		}
	}
	t.Logf("replication messages dropped by fault injection on %v: %d", names, total)
	if total == 0 {
		t.Fatal("no replication message was dropped: the network was not unreliable")
	}
}

// checkAppends reads the keys back through addr: each client's own key
// must be exactly its tokens in order, and the shared log every token
// exactly once, each client's in order.
func checkAppends(t *testing.T, addr string, clients, perClient int) {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ReadTimeout: 10 * time.Second})
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range clients {
		id := "c" + strconv.Itoa(i)
		var want strings.Builder
		for n := 1; n <= perClient; n++ {
			want.WriteString(token(id, n))
		}
		got, err := rc.Get(ctx, "own/"+id).Result()
		if err != nil || got != want.String() {
			t.Fatalf("own/%s = %q, %v;\nwant %q", id, got, err, want.String())
		}
	}
	log, err := rc.Get(ctx, "log").Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := checkSharedLog(log, clients, perClient); err != nil {
		t.Fatalf("%v\nlog: %q", err, log)
	}
}

// checkSharedLog checks that log is an interleaving of every client's
// tokens 1..perClient, each once and in order.
func checkSharedLog(log string, clients, perClient int) error {
	last := make([]int, clients)
	toks := strings.Split(strings.TrimSuffix(log, ";"), ";")
	for pos, tok := range toks {
		var id, n int
		if _, err := fmt.Sscanf(tok, "c%d:%d", &id, &n); err != nil || id < 0 || id >= clients || tok != fmt.Sprintf("c%d:%d", id, n) {
			return fmt.Errorf("token %d of the shared log is %q, not a client's token", pos, tok)
		}
		if n != last[id]+1 {
			return fmt.Errorf("token %d of the shared log is %q after c%d:%d: applied twice, lost or reordered", pos, tok, id, last[id])
		}
		last[id] = n
	}
	for id, n := range last {
		if n != perClient {
			return fmt.Errorf("the shared log ends with c%d:%d, want c%d:%d", id, n, id, perClient)
		}
	}
	return nil
}
