package replica

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/internal/rawio"
	"github.com/lockstep/lockstep/resp"
)

// routes knows where the replicas that order writes (head or primary) and
// answer reads (tail or primary) take client connections.
type routes struct {
	mu      sync.Mutex
	cfg     coord.Config
	addrs   map[string]string // name -> client address, for the live incarnation
	incs    map[string]string // name -> live incarnation
	applied map[string]uint64 // name -> applied seq it last published (for ROLE and INFO)
	changed chan struct{}
}

func newRoutes() *routes {
	return &routes{addrs: map[string]string{}, incs: map[string]string{}, applied: map[string]uint64{}, changed: make(chan struct{})}
}

func (rt *routes) setConfig(cfg coord.Config) {
	rt.mu.Lock()
	rt.cfg = cfg
	rt.notifyLocked()
	rt.mu.Unlock()
}

func (rt *routes) setNodes(nodes []coord.NodeInfo) {
	rt.mu.Lock()
	clear(rt.addrs)
	clear(rt.incs)
	clear(rt.applied)
	for _, n := range nodes {
		rt.addrs[n.Name] = n.ClientAddr
		rt.incs[n.Name] = n.Incarnation
		rt.applied[n.Name] = n.Applied
	}
	rt.notifyLocked()
	rt.mu.Unlock()
}

func (rt *routes) notifyLocked() {
	close(rt.changed)
	rt.changed = make(chan struct{})
}

// target returns the client address of the head or primary (wantHead) or
// of the replica that answers reads, and a channel closed when routing
// information changes.
func (rt *routes) target(wantHead bool) (string, <-chan struct{}) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	ms := rt.cfg.Members
	if len(ms) == 0 {
		return "", rt.changed
	}
	m := ms[len(ms)-1]
	if wantHead || rt.cfg.Protocol != ProtocolChain {
		m = ms[0] // a primary orders writes and answers reads
	}
	if rt.incs[m.Name] != m.Incarnation {
		return "", rt.changed // that member's process is gone
	}
	return rt.addrs[m.Name], rt.changed
}

// peer is another member of the group as ROLE and INFO show it.
type peer struct {
	name, addr string
	applied    uint64
}

// peers returns the members of the current configuration other than
// self, and its joiner, with their client addresses ("" if unknown) and
// the applied seqs they last published; and the member that orders
// writes.
func (rt *routes) peers(self string) (others []peer, orderer peer) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	ms := rt.cfg.Members
	if rt.cfg.Joining != nil {
		ms = append(slices.Clone(ms), *rt.cfg.Joining)
	}
	for i, m := range ms {
		p := peer{name: m.Name, addr: rt.addrs[m.Name], applied: rt.applied[m.Name]}
		if i == 0 {
			orderer = p
		}
		if m.Name != self {
			others = append(others, p)
		}
	}
	return others, orderer
}

// forwarder sends requests this replica cannot answer to the replica that
// can, over pooled RESP connections. Each lane is one request at a time
// with its own client id and request counter, so a write retried after a
// failover carries the id the new head's dedup table knows.
type forwarder struct {
	id     string
	routes *routes
	log    *slog.Logger
	lanes  chan *lane
	// Budget bounds how long one request may wait for a head or tail to
	// appear and answer, across retries.
	budget time.Duration
	// password is sent with AUTH on every new connection ("": none).
	password string
}

// ErrForwardAuth: the node a request was forwarded to refused the
// forwarder's AUTH, or asked for one it was not given: the nodes of a
// group do not share one --requirepass. Retrying cannot help, so the
// client is told at once.
var ErrForwardAuth = errors.New("lockstep: forwarding refused by the node's password")

const forwardLanes = 64

func newForwarder(id string, rt *routes, log *slog.Logger) *forwarder {
	f := &forwarder{id: id, routes: rt, log: log, lanes: make(chan *lane, forwardLanes), budget: 15 * time.Second}
	for i := range forwardLanes {
		f.lanes <- &lane{client: id + "/" + strconv.Itoa(i)}
	}
	return f
}

// lane is one forwarding connection and its request counter.
type lane struct {
	client string
	num    uint64
	addr   string
	conn   net.Conn
	rd     *resp.Reader
	bw     *bufio.Writer
}

func (l *lane) close() {
	if l.conn != nil {
		_ = l.conn.Close()
		l.conn, l.addr = nil, ""
	}
}

// write forwards a write to the head or primary, tagged with the client's
// own request id, or with the lane's next one when client is "".
func (f *forwarder) Write(client string, num uint64, args [][]byte, out []byte) ([]byte, error) {
	l := <-f.lanes
	defer func() { f.lanes <- l }()
	if client == "" {
		l.num++
		client, num = l.client, l.num
	}
	fwd := make([][]byte, 0, len(args)+3)
	fwd = append(fwd, []byte(cmdForwardWrite), []byte(client), strconv.AppendUint(nil, num, 10))
	fwd = append(fwd, args...)
	return f.do(l, true, fwd, out)
}

func (f *forwarder) Read(args [][]byte, out []byte) ([]byte, error) {
	l := <-f.lanes
	defer func() { f.lanes <- l }()
	fwd := make([][]byte, 0, len(args)+1)
	fwd = append(fwd, []byte(cmdForwardRead))
	fwd = append(fwd, args...)
	return f.do(l, false, fwd, out)
}

// do sends req to the head or tail and appends its reply, retrying on a
// connection failure or a TRYAGAIN (the target changed under us) until the
// budget runs out. A write is resent with the same request number.
func (f *forwarder) do(l *lane, head bool, req [][]byte, out []byte) ([]byte, error) {
	deadline := time.Now().Add(f.budget)
	for attempt := 0; ; attempt++ {
		addr, changed := f.routes.target(head)
		if addr != "" {
			v, err := l.roundTrip(addr, f.password, req, deadline)
			if errors.Is(err, ErrForwardAuth) || (err == nil && isNoAuth(v)) {
				l.close()
				return out, authError(addr, err, v)
			}
			if err == nil && !isTryAgain(v) {
				return resp.AppendValue(out, v), nil
			}
			if err != nil {
				l.close()
				f.log.Debug("forward failed", "to", addr, "err", err)
			}
		}
		if time.Now().After(deadline) {
			what := "tail"
			if head {
				what = "head"
			}
			return out, fmt.Errorf("%w: no %s answered within %v", ErrNotServing, what, f.budget)
		}
		// A TRYAGAIN usually means the target has not installed the
		// configuration that made it head yet: milliseconds. Start short.
		backoff := time.NewTimer(min(2*time.Millisecond<<min(attempt, 7), 200*time.Millisecond))
		select {
		case <-changed:
		case <-backoff.C:
		}
		backoff.Stop()
	}
}

func isTryAgain(v resp.Value) bool { return isError(v, "TRYAGAIN") }

// isNoAuth reports a reply asking for AUTH: the target has a password and
// this forwarder has none.
func isNoAuth(v resp.Value) bool { return isError(v, "NOAUTH") }

func isError(v resp.Value, code string) bool {
	return v.Type == '-' && len(v.Str) >= len(code) && string(v.Str[:len(code)]) == code
}

// authError explains a refused AUTH (err) or a NOAUTH reply (v).
func authError(addr string, err error, v resp.Value) error {
	if err == nil {
		err = fmt.Errorf("%w: %s", ErrForwardAuth, v.Str)
	}
	return fmt.Errorf("%w (forwarding to %s); every node of a group must have the same --requirepass", err, addr)
}

func (l *lane) roundTrip(addr, password string, req [][]byte, deadline time.Time) (resp.Value, error) {
	if l.conn == nil || l.addr != addr {
		if err := l.dial(addr, password, deadline); err != nil {
			return resp.Value{}, err
		}
	}
	_ = l.conn.SetDeadline(deadline)
	return l.send(req)
}

// dial opens the lane's connection to addr and, with a password,
// authenticates it first.
func (l *lane) dial(addr, password string, deadline time.Time) error {
	l.close()
	c, err := net.DialTimeout("tcp", addr, time.Until(deadline))
	if err != nil {
		return err
	}
	c = rawio.Wrap(c)
	l.conn, l.addr = c, addr
	l.rd = resp.NewReaderLimits(c, resp.Limits{MaxBulkLen: 1 << 30, MaxArgs: 1 << 24})
	l.bw = bufio.NewWriter(c)
	if password == "" {
		return nil
	}
	_ = c.SetDeadline(deadline)
	v, err := l.send([][]byte{[]byte("AUTH"), []byte(password)})
	switch {
	case err != nil:
		return err
	case v.Type == '-':
		return fmt.Errorf("%w: %s", ErrForwardAuth, v.Str)
	}
	return nil
}

// send writes one command and reads its reply.
func (l *lane) send(req [][]byte) (resp.Value, error) {
	if _, err := l.bw.Write(resp.AppendCommand(nil, req...)); err != nil {
		return resp.Value{}, err
	}
	if err := l.bw.Flush(); err != nil {
		return resp.Value{}, err
	}
	return l.rd.ReadValue()
}
