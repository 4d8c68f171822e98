package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/lockstep/lockstep/resp"
)

// Histogram bounds: latencies are recorded in microseconds from 1µs to one
// minute with three significant digits, which is exact below about 2ms.
const (
	histMinUS   = 1
	histMaxUS   = int64(time.Minute / time.Microsecond)
	histDigits  = 3
	maxSamples  = 5
	opGet       = 'G'
	opSet       = 'S'
	keyPrefix   = "key:"
	keyMinWidth = 12
)

// shared is the state all clients of one run read. Clients never write it
// except through atomics, so the hot path takes no lock.
type shared struct {
	cfg       Config
	value     []byte
	start     time.Time // when the clients started, warmup included
	warmupEnd time.Time
	end       time.Time // zero when the run is bounded by Requests
	remaining atomic.Int64
	stopped   atomic.Bool
	abort     context.Context
	cancel    context.CancelCauseFunc
}

// claim reserves up to n measured requests from the Requests budget and
// returns how many it got; 0 means the budget is spent.
func (s *shared) claim(n int) int {
	if s.cfg.Requests == 0 {
		return n
	}
	left := s.remaining.Add(-int64(n))
	switch {
	case left >= 0:
		return n
	case left > -int64(n):
		return n + int(left)
	default:
		return 0
	}
}

// opStats are one client's counts and latencies for one operation.
type opStats struct {
	ops, errors int64
	hist        *hdrhistogram.Histogram
}

func newOpStats() opStats {
	return opStats{hist: hdrhistogram.New(histMinUS, histMaxUS, histDigits)}
}

// record counts one reply and its latency.
func (o *opStats) record(lat time.Duration, isErr bool) {
	o.ops++
	if isErr {
		o.errors++
	}
	us := lat.Microseconds()
	if us > histMaxUS {
		us = histMaxUS
	}
	_ = o.hist.RecordValue(us) // cannot fail: us is clamped to the range
}

// client is one connection and the goroutine that drives it. Only that
// goroutine touches its fields, except done, which progress reads.
type client struct {
	id       int
	sh       *shared
	conn     net.Conn
	rd       *resp.Reader
	rng      *rand.Rand
	buf      []byte
	key      []byte
	ops      []byte // the operation of each request in the current batch
	getArgs  [][]byte
	setArgs  [][]byte
	waitArgs [][]byte
	get      opStats
	set      opStats
	samples  []string
	last     time.Time // when the last measured reply arrived
	done     atomic.Int64
}

func newClient(id int, sh *shared, conn net.Conn) *client {
	seed := uint64(sh.cfg.Seed) + uint64(id)
	return &client{
		id:       id,
		sh:       sh,
		conn:     conn,
		rd:       resp.NewReader(conn),
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		buf:      make([]byte, 0, sh.cfg.Pipeline*(sh.cfg.ValueSize+64)),
		ops:      make([]byte, 0, sh.cfg.Pipeline),
		getArgs:  [][]byte{[]byte("GET"), nil},
		waitArgs: [][]byte{[]byte("WAIT"), []byte(strconv.Itoa(sh.cfg.WaitReplicas)), []byte("0")},
		setArgs:  [][]byte{[]byte("SET"), nil, sh.value},
		get:      newOpStats(),
		set:      newOpStats(),
	}
}

// run sends batches until the run ends. It returns nil when the run ended
// (time, budget or abort) and a wrapped ErrConnLost when its own connection
// failed first, in which case it also aborts the other clients.
func (c *client) run() error {
	for {
		now := time.Now()
		if c.sh.stopped.Load() || (!c.sh.end.IsZero() && !now.Before(c.sh.end)) {
			return nil
		}
		measured := !now.Before(c.sh.warmupEnd)
		n := c.sh.cfg.Pipeline
		if measured {
			if n = c.sh.claim(n); n == 0 {
				return nil
			}
		}
		c.fill(n)
		start := time.Now()
		if _, err := c.conn.Write(c.buf); err != nil {
			return c.fail(err)
		}
		if err := c.readReplies(start, measured); err != nil {
			return c.fail(err)
		}
	}
}

// pickKey draws a key number: from the hot set HotPercent of the time
// when there is one, else uniformly.
func (c *client) pickKey(cfg *Config) int {
	if cfg.HotKeys > 0 && c.rng.IntN(100) < cfg.HotPercent {
		return c.rng.IntN(cfg.HotKeys)
	}
	return c.rng.IntN(cfg.Keys)
}

// fill builds the next batch of n commands into the reused buffer.
func (c *client) fill(n int) {
	c.buf = c.buf[:0]
	c.ops = c.ops[:0]
	cfg := &c.sh.cfg
	for range n {
		c.key = appendKey(c.key[:0], c.pickKey(cfg))
		if c.pickGet() {
			c.getArgs[1] = c.key
			c.buf = resp.AppendCommand(c.buf, c.getArgs...)
			c.ops = append(c.ops, opGet)
		} else {
			c.setArgs[1] = c.key
			c.buf = resp.AppendCommand(c.buf, c.setArgs...)
			if cfg.WaitReplicas > 0 {
				c.buf = resp.AppendCommand(c.buf, c.waitArgs...)
			}
			c.ops = append(c.ops, opSet)
		}
	}
}

func (c *client) pickGet() bool {
	g, s := c.sh.cfg.GetRatio, c.sh.cfg.SetRatio
	switch {
	case s == 0:
		return true
	case g == 0:
		return false
	default:
		return c.rng.IntN(g+s) < g
	}
}

// readReplies reads one reply per request of the batch sent at start; each
// latency runs from that write to the reply, as redis-benchmark measures.
func (c *client) readReplies(start time.Time, measured bool) error {
	for _, op := range c.ops {
		v, err := c.rd.ReadValue()
		if err != nil {
			return err
		}
		if op == opSet && c.sh.cfg.WaitReplicas > 0 {
			if v, err = c.readWait(v); err != nil {
				return err
			}
		}
		if !measured {
			continue
		}
		now := time.Now()
		isErr := v.Type == '-'
		if isErr {
			c.sample(v.Str)
		}
		if op == opGet {
			c.get.record(now.Sub(start), isErr)
		} else {
			c.set.record(now.Sub(start), isErr)
		}
		c.last = now
	}
	if measured {
		c.done.Add(int64(len(c.ops)))
	}
	return nil
}

// readWait reads the WAIT reply that follows a SET's reply and returns
// what to count for the pair: the SET's error, a WAIT error, an error if
// fewer replicas acknowledged than asked for, or the SET's reply.
func (c *client) readWait(set resp.Value) (resp.Value, error) {
	w, err := c.rd.ReadValue()
	switch {
	case err != nil:
		return w, err
	case set.Type == '-':
		return set, nil
	case w.Type == '-':
		return w, nil
	case w.Type == ':' && w.Int < int64(c.sh.cfg.WaitReplicas):
		return resp.Value{Type: '-', Str: []byte("WAIT: fewer replicas acknowledged than asked for")}, nil
	}
	return set, nil
}

// sample keeps the first few distinct error replies for the report.
func (c *client) sample(msg []byte) {
	if len(c.samples) >= maxSamples {
		return
	}
	for _, s := range c.samples {
		if s == string(msg) {
			return
		}
	}
	c.samples = append(c.samples, string(msg))
}

// fail turns an I/O error into the run's result. An error caused by a
// deliberate abort (interrupt, stall timeout, another client's failure) is
// not this client's to report.
func (c *client) fail(err error) error {
	if context.Cause(c.sh.abort) != nil {
		return nil
	}
	err = fmt.Errorf("%w to %s (client %d): %w", ErrConnLost, c.sh.cfg.Addr, c.id, err)
	c.sh.cancel(err)
	return err
}

// appendKey appends key:%012d without fmt, which would allocate per request.
func appendKey(dst []byte, n int) []byte {
	dst = append(dst, keyPrefix...)
	var digits [20]byte
	d := strconv.AppendInt(digits[:0], int64(n), 10)
	for i := len(d); i < keyMinWidth; i++ {
		dst = append(dst, '0')
	}
	return append(dst, d...)
}
