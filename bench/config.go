package bench

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors returned by the package. Callers check them with errors.Is;
// the returned errors wrap them with the details of what went wrong.
var (
	// ErrInvalidConfig reports a Config field or flag value that cannot work.
	ErrInvalidConfig = errors.New("lockstep: invalid bench configuration")
	// ErrConnect reports that a client could not open its connection before
	// the run started, so nothing was measured.
	ErrConnect = errors.New("lockstep: cannot connect")
	// ErrAuth reports that the server refused the AUTH sent before the run.
	ErrAuth = errors.New("lockstep: AUTH refused")
	// ErrConnLost reports a connection that failed in the middle of the run
	// (server died, reset, or sent a malformed reply); the run stops and the
	// Result holds what was measured until then.
	ErrConnLost = errors.New("lockstep: lost connection")
	// ErrTimeout reports requests still unanswered well after the run ended,
	// which means the server stalled.
	ErrTimeout = errors.New("lockstep: server did not answer in time")
)

// Limits that keep a typo from exhausting memory or file descriptors on the
// machine that also runs the server under test.
const (
	maxClients      = 10000
	maxPipeline     = 100000
	maxValueSize    = 16 << 20
	maxBatchBytes   = 64 << 20
	maxRatioWeight  = 1000000
	defaultGrace    = 2 * time.Second
	defaultInterval = time.Second
)

// Config describes one benchmark run. The zero value is not usable; start
// from DefaultConfig and change what differs.
type Config struct {
	// Addr is the host:port of the RESP server under test.
	Addr string
	// Clients is the number of concurrent connections, one goroutine each.
	Clients int
	// Pipeline is the number of requests each client sends before it waits
	// for their replies; 1 means one request in flight per client.
	Pipeline int
	// Keys is the size of the keyspace; keys are key:000000000000 upwards.
	Keys int
	// HotKeys, when positive, makes HotPercent of the requests go to the
	// first HotKeys keys (a hot-key workload); the rest are uniform over
	// Keys.
	HotKeys    int
	HotPercent int
	// ValueSize is the length in bytes of every SET value.
	ValueSize int
	// Duration is how long the measured part of the run lasts. It is
	// ignored when Requests is set.
	Duration time.Duration
	// Requests, when positive, ends the run after exactly that many
	// measured requests over all clients.
	Requests int64
	// GetRatio and SetRatio weigh the choice between GET and SET; 9 and 1
	// mean nine GETs for each SET on average.
	GetRatio, SetRatio int
	// WaitReplicas, when positive, follows every SET with WAIT
	// <WaitReplicas> 0 in the same pipeline and counts the SET done only
	// when the WAIT answers: Redis's synchronous replication, for
	// comparing against a replicated lockstep.
	WaitReplicas int
	// Password, when set, is sent with AUTH on every connection first.
	Password string
	// Seed drives key and operation choice; client i uses Seed+i, so the
	// same seed gives every client the same sequence again.
	Seed int64
	// Warmup is run before the measured part and not counted.
	Warmup time.Duration
	// ProgressInterval is the time between progress lines (default 1s).
	ProgressInterval time.Duration
	// ProgressInline overwrites one progress line with '\r' instead of
	// printing one line per interval; set it when progress is a terminal.
	ProgressInline bool

	// stopGrace is how long in-flight requests may take after the run
	// ended before the server counts as stalled; tests shorten it.
	stopGrace time.Duration
}

// DefaultConfig returns the defaults of the lockstep bench command: a local
// node, 50 clients, no pipelining, an even GET/SET mix for ten seconds.
func DefaultConfig() Config {
	return Config{
		Addr:      "127.0.0.1:6390",
		Clients:   50,
		Pipeline:  1,
		Keys:      100000,
		ValueSize: 100,
		Duration:  10 * time.Second,
		GetRatio:  1,
		SetRatio:  1,
	}
}

// Validate reports the first field that cannot work, wrapped in
// ErrInvalidConfig, with a message naming the matching command-line flag.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	for _, a := range strings.Split(c.Addr, ",") {
		if _, port, err := net.SplitHostPort(strings.TrimSpace(a)); err != nil || port == "" {
			return bad("--addr %q is not host:port", a)
		}
	}
	if c.WaitReplicas < 0 {
		return bad("--wait %d must not be negative", c.WaitReplicas)
	}
	switch {
	case c.Clients < 1 || c.Clients > maxClients:
		return bad("--clients %d must be between 1 and %d", c.Clients, maxClients)
	case c.Pipeline < 1 || c.Pipeline > maxPipeline:
		return bad("--pipeline %d must be between 1 and %d", c.Pipeline, maxPipeline)
	case c.Keys < 1:
		return bad("--keys %d must be at least 1", c.Keys)
	case c.HotKeys < 0 || c.HotKeys > c.Keys:
		return bad("--hot-keys %d must be between 0 and --keys %d", c.HotKeys, c.Keys)
	case c.HotPercent < 0 || c.HotPercent > 100:
		return bad("--hot-percent %d must be between 0 and 100", c.HotPercent)
	case c.ValueSize < 0 || c.ValueSize > maxValueSize:
		return bad("--value-size %d must be between 0 and %d", c.ValueSize, maxValueSize)
	case int64(c.Pipeline)*int64(c.ValueSize) > maxBatchBytes:
		return bad("--pipeline %d times --value-size %d exceeds %d bytes per client",
			c.Pipeline, c.ValueSize, maxBatchBytes)
	case c.Requests < 0:
		return bad("--requests %d must not be negative", c.Requests)
	case c.Requests == 0 && c.Duration <= 0:
		return bad("--duration %s must be positive when --requests is 0", c.Duration)
	case c.Warmup < 0:
		return bad("--warmup %s must not be negative", c.Warmup)
	case c.ProgressInterval < 0:
		return bad("progress interval %s must not be negative", c.ProgressInterval)
	}
	if err := checkRatio(c.GetRatio, c.SetRatio); err != nil {
		return bad("--ratio %d:%d: %v", c.GetRatio, c.SetRatio, err)
	}
	return nil
}

// ParseRatio parses a "get:set" weight pair such as "1:1", "9:1" or "0:1".
// Both parts must be non-negative integers and at least one must be positive.
func ParseRatio(s string) (get, set int, err error) {
	bad := func(why string) (int, int, error) {
		return 0, 0, fmt.Errorf("%w: --ratio %q %s", ErrInvalidConfig, s, why)
	}
	g, st, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return bad("is not get:set (for example 1:1 or 9:1)")
	}
	get, errG := strconv.Atoi(strings.TrimSpace(g))
	set, errS := strconv.Atoi(strings.TrimSpace(st))
	if errG != nil || errS != nil {
		return bad("needs two whole numbers, as in 9:1")
	}
	if err := checkRatio(get, set); err != nil {
		return bad(err.Error())
	}
	return get, set, nil
}

// checkRatio is the rule shared by ParseRatio and Validate.
func checkRatio(get, set int) error {
	switch {
	case get < 0 || set < 0:
		return errors.New("must not be negative")
	case get > maxRatioWeight || set > maxRatioWeight:
		return fmt.Errorf("weights must be at most %d", maxRatioWeight)
	case get == 0 && set == 0:
		return errors.New("must have at least one positive weight")
	}
	return nil
}

// withDefaults fills the unexported and optional fields Run relies on.
func (c Config) withDefaults() Config {
	if c.ProgressInterval == 0 {
		c.ProgressInterval = defaultInterval
	}
	if c.stopGrace == 0 {
		c.stopGrace = defaultGrace
	}
	if c.Requests > 0 {
		c.Duration = 0
	}
	return c
}

// addrFor spreads clients over the comma-separated addresses in Addr:
// client i uses the (i mod n)th.
func (c Config) addrFor(i int) string {
	addrs := strings.Split(c.Addr, ",")
	return strings.TrimSpace(addrs[i%len(addrs)])
}
