package nodesim

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/resp"
	"github.com/lockstep/lockstep/sim"
)

// Client timing, in milliseconds.
const (
	attemptTimeout = 300  // an attempt without a reply is retried
	giveUpAfter    = 6000 // an operation still unanswered is left pending
)

// client is one application connection pool: one operation at a time,
// sent to the node its routes name, retried with the same request id.
type client struct {
	w      *World
	id     int
	name   string
	num    uint64 // the last request number used
	op     *op
	routes coord.Config // possibly stale
	quiet  bool         // starts no new operation
	// cutFrom names the nodes a partition keeps this client from.
	cutFrom map[string]bool
	script  []op // operations to run before choosing at random
}

// op is one operation of the history in flight.
type op struct {
	hid     sim.OpID
	write   bool
	append  bool // APPEND rather than SET: applied twice, it shows
	key     string
	val     string
	num     uint64
	attempt int
	started int64
	timeout int64
}

func newClient(w *World, i int) *client {
	return &client{w: w, id: i, name: fmt.Sprintf("c%d", i), cutFrom: map[string]bool{}}
}

// step starts an operation now and then, and retries one that timed out.
func (c *client) step() {
	w := c.w
	switch {
	case c.op == nil && len(c.script) > 0:
		o := c.script[0]
		c.script = c.script[1:]
		c.begin(o.write, o.append, o.key, o.val)
	case c.op == nil && !c.quiet && w.rng.IntN(20) == 0:
		key := fmt.Sprintf("k%d", w.rng.IntN(w.p.Keys))
		// Client 0 only reads: it keeps its routes while its reads are
		// answered, so it is the one that asks a deposed node.
		write := c.id != 0 && w.rng.IntN(2) == 0
		c.begin(write, write && w.rng.IntN(2) == 0, key, fmt.Sprintf("%s.%d;", c.name, c.num+1))
	case c.op != nil && w.now >= c.op.timeout:
		if w.now-c.op.started >= giveUpAfter {
			w.stats.Inc("client gave up")
			w.logf("%s gave up on %s", c.name, c.describe())
			c.op = nil // pending in the history: it may yet take effect
			return
		}
		c.refresh()
		c.send()
	}
}

func (c *client) begin(write, app bool, key, val string) {
	o := &op{write: write, append: app, key: key, val: val, started: c.w.now}
	switch {
	case app:
		c.num++
		o.num = c.num
		o.hid = c.w.hist.Invoke(c.id, sim.KVInput{Op: sim.KVAppend, Key: key, Value: val})
	case write:
		c.num++
		o.num = c.num
		o.hid = c.w.hist.Invoke(c.id, sim.KVInput{Op: sim.KVPut, Key: key, Value: val})
	default:
		o.hid = c.w.hist.Invoke(c.id, sim.KVInput{Op: sim.KVGet, Key: key})
	}
	c.op = o
	c.send()
}

func (c *client) describe() string {
	if c.op.append {
		return fmt.Sprintf("append(%s, %s) #%d", c.op.key, c.op.val, c.op.num)
	}
	if c.op.write {
		return fmt.Sprintf("set(%s, %s) #%d", c.op.key, c.op.val, c.op.num)
	}
	return fmt.Sprintf("get(%s)", c.op.key)
}

// refresh reads the configuration again, as a client library would after
// an error: it sees what the coordinator has now.
func (c *client) refresh() {
	if cfg := c.w.coord.cfg; cfg != nil {
		c.routes = *cfg
	}
}

// target is the node the routes say orders writes or answers reads.
func (c *client) target(write bool) string {
	ms := c.routes.Members
	if len(ms) == 0 {
		return ""
	}
	if write || c.routes.Protocol != coord.ProtocolChain {
		return ms[0].Name
	}
	return ms[len(ms)-1].Name
}

// send makes one attempt: the request reaches the node a millisecond or
// two later, and the reply comes back as late.
func (c *client) send() {
	w := c.w
	o := c.op
	o.attempt++
	o.timeout = w.now + attemptTimeout
	to := c.target(o.write)
	if to == "" {
		return
	}
	attempt := o.attempt
	w.logf("%s -> %s: %s (attempt %d)", c.name, to, c.describe(), attempt)
	w.after(1+w.rng.Int64N(2), func() { c.arrive(to, o, attempt) })
}

// arrive runs the request at the node, if its process is up, and sends
// the reply back once its gate commits.
func (c *client) arrive(to string, o *op, attempt int) {
	w := c.w
	n := w.byName(to)
	if n == nil || n.down || c.cutFrom[to] {
		return
	}
	if n.paused() {
		w.agenda.Add(n.pauseTill, func() { c.arrive(to, o, attempt) })
		return
	}
	if n.stop != nil {
		// A stopping server reads no new command; the client sees its
		// connection close.
		w.after(1+w.rng.Int64N(2), func() { c.reply(o, attempt, nil, errStopping) })
		return
	}
	var out []byte
	var gate uint64
	var err error
	if o.write {
		out, gate, err = n.rep.Write(c.request(o), nil)
		n.rep.Flush(w.ctx)
	} else {
		out, gate, err = n.rep.Read([][]byte{[]byte("GET"), []byte(o.key)}, nil)
	}
	back := func(err error) {
		if (w.faulty && w.rng.IntN(50) == 0) || c.cutFrom[to] {
			w.stats.Inc("reply lost")
			return // the connection broke: the client retries on its timeout
		}
		w.after(1+w.rng.Int64N(2), func() { c.reply(o, attempt, out, err) })
	}
	// The node counts the commands whose replies wait, so that a graceful
	// stop lets them finish.
	n.inFlight++
	done := func(err error) {
		n.inFlight--
		back(err)
	}
	if err != nil || gate == 0 || !n.rep.OnCommit(gate, done) {
		done(err)
	}
}

// request is the write as a retrying client sends it: lockstep.req with
// the client's id and request number, so a retry applies at most once.
func (c *client) request(o *op) [][]byte {
	cmd := "SET"
	if o.append {
		cmd = "APPEND"
	}
	return [][]byte{
		[]byte("lockstep.req"), []byte(c.name), strconv.AppendUint(nil, o.num, 10),
		[]byte(cmd), []byte(o.key), []byte(o.val),
	}
}

// reply ends the operation on a definite answer, or retries.
func (c *client) reply(o *op, attempt int, out []byte, err error) {
	w := c.w
	if c.op != o || attempt != o.attempt {
		return // an answer to an attempt given up on
	}
	v, perr := parseReply(out)
	switch {
	case err != nil || perr != nil:
		w.stats.Inc("client retry")
		w.logf("%s: %s failed: %v %v", c.name, c.describe(), err, perr)
		c.refresh()
		o.timeout = w.now + 1 + w.rng.Int64N(20) // retry soon
	case o.write:
		w.hist.Return(o.hid, sim.KVOutput{})
		w.stats.Inc("write")
		c.op = nil
	default:
		w.hist.Return(o.hid, sim.KVOutput{Value: v})
		w.stats.Inc("read")
		w.logf("%s: get(%s) = %q", c.name, o.key, v)
		c.op = nil
	}
}

// parseReply reads one RESP reply: a value, or an error for an error reply.
func parseReply(b []byte) (string, error) {
	if len(b) == 0 {
		return "", fmt.Errorf("no reply")
	}
	v, err := resp.NewReader(bytes.NewReader(b)).ReadValue()
	if err != nil {
		return "", err
	}
	if v.Type == '-' {
		return "", fmt.Errorf("%s", v.Str)
	}
	return string(v.Str), nil
}
