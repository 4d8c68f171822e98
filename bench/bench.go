// Package bench is a load generator for any server that speaks RESP: a
// lockstep node, redis-server, or anything else that answers GET and SET.
//
// It is deliberately cheap, because on a small machine it shares the CPU
// with the server it measures: each client is one goroutine with one raw
// TCP connection, one reused request buffer and private HDR histograms that
// are merged only when the run is over, so the hot path has no lock and
// almost no allocation.
package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/lockstep/lockstep/internal/rawio"
	"github.com/lockstep/lockstep/resp"
)

// dialTimeout bounds each connection attempt before the run.
const dialTimeout = 5 * time.Second

// errStall is the abort cause when in-flight requests outlive the grace
// period after the end of the run.
var errStall = errors.New("stall")

// Run connects cfg.Clients clients to cfg.Addr, drives GET/SET load until
// cfg.Duration has passed (after cfg.Warmup) or cfg.Requests requests were
// answered, and returns what it measured. Progress lines go to progress
// every cfg.ProgressInterval unless progress is nil.
//
// Cancelling ctx stops the run at once; the result then has Interrupted set
// and the error is nil. A connection failure before the run returns
// ErrConnect or ErrAuth and an empty result; one during the run returns the
// result measured so far with ErrConnLost, and a server that stops answering
// returns it with ErrTimeout.
func Run(ctx context.Context, cfg Config, progress io.Writer) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	cfg = cfg.withDefaults()
	res := newResult(cfg)
	conns, err := connectAll(ctx, cfg)
	if err != nil {
		return res, err
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()

	sh := newShared(ctx, cfg)
	defer sh.cancel(nil)
	clients := make([]*client, len(conns))
	for i, conn := range conns {
		clients[i] = newClient(i, sh, rawio.Wrap(conn))
	}
	sh.startClock()
	end := drive(sh, clients, progress)

	last := sh.warmupEnd
	for _, c := range clients {
		if c.last.After(last) {
			last = c.last
		}
	}
	if sh.end.IsZero() || last.After(sh.end) || end.Before(sh.end) {
		// Bounded by Requests, overran the deadline, or stopped early: the
		// measured time is up to the last reply. Otherwise it is the full
		// duration, even if the last reply came a little before it.
		sh.end = last
	}
	res.merge(clients, sh.end.Sub(sh.warmupEnd))
	return res, finish(ctx, sh, &res)
}

func newShared(ctx context.Context, cfg Config) *shared {
	sh := &shared{cfg: cfg, value: bytes.Repeat([]byte{'x'}, cfg.ValueSize)}
	sh.abort, sh.cancel = context.WithCancelCause(ctx)
	sh.remaining.Store(cfg.Requests)
	return sh
}

// startClock fixes the schedule once everything is allocated, so setup is
// not measured: warmup begins now, the measured part right after it.
func (sh *shared) startClock() {
	sh.start = time.Now()
	sh.warmupEnd = sh.start.Add(sh.cfg.Warmup)
	if sh.cfg.Duration > 0 {
		sh.end = sh.warmupEnd.Add(sh.cfg.Duration)
	}
}

// drive runs the clients to completion with the progress printer and the
// watchdog beside them, and returns when the last client stopped.
func drive(sh *shared, clients []*client, progress io.Writer) time.Time {
	var wg sync.WaitGroup
	for _, c := range clients {
		unwatch := context.AfterFunc(sh.abort, func() {
			// A deadline in the past wakes any blocked Read or Write.
			_ = c.conn.SetDeadline(time.Unix(1, 0))
		})
		wg.Go(func() {
			defer unwatch()
			_ = c.run() // the first failure is recorded as sh.abort's cause
		})
	}
	allDone := make(chan struct{})
	var helpers sync.WaitGroup
	helpers.Go(func() { watchdog(sh, allDone) })
	if progress != nil {
		helpers.Go(func() { report(sh, clients, progress, allDone) })
	}
	wg.Wait()
	end := time.Now()
	close(allDone)
	helpers.Wait()
	return end
}

// watchdog tells the clients to stop at the end of the run, and aborts the
// ones still waiting for replies when the grace period is over.
func watchdog(sh *shared, allDone <-chan struct{}) {
	var deadline <-chan time.Time
	if !sh.end.IsZero() {
		t := time.NewTimer(time.Until(sh.end))
		defer t.Stop()
		deadline = t.C
	}
	select {
	case <-allDone:
		return
	case <-sh.abort.Done():
	case <-deadline:
	}
	sh.stopped.Store(true)
	grace := time.NewTimer(sh.cfg.stopGrace)
	defer grace.Stop()
	select {
	case <-allDone:
	case <-grace.C:
		sh.cancel(errStall)
	}
}

// finish classifies how the run ended and records the error in res.
func finish(ctx context.Context, sh *shared, res *Result) error {
	cause := context.Cause(sh.abort)
	var err error
	switch {
	case cause == nil:
	case errors.Is(cause, ErrConnLost):
		err = cause
	case ctx.Err() != nil:
		res.Interrupted = true
	case errors.Is(cause, errStall):
		err = fmt.Errorf("%w: requests to %s unanswered %s after the run ended",
			ErrTimeout, sh.cfg.Addr, sh.cfg.stopGrace)
	default:
		err = cause
	}
	if err != nil {
		res.Error = err.Error()
	}
	return err
}

// connectAll dials every client at once and sends AUTH where needed. On any
// failure it closes what it opened and returns the first error.
func connectAll(ctx context.Context, cfg Config) ([]net.Conn, error) {
	conns := make([]net.Conn, cfg.Clients)
	errs := make([]error, cfg.Clients)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() { conns[i], errs[i] = connect(ctx, cfg, cfg.addrFor(i)) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		for _, e := range errs {
			if e != nil {
				return nil, e // one clear error, not fifty copies of it
			}
		}
	}
	return conns, nil
}

// connect opens one connection to addr and authenticates it.
func connect(ctx context.Context, cfg Config, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w to %s: %w", ErrConnect, addr, err)
	}
	if cfg.Password == "" {
		return conn, nil
	}
	if err := auth(ctx, conn, cfg); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// auth sends AUTH and waits for its reply, within the dial timeout.
func auth(ctx context.Context, conn net.Conn, cfg Config) error {
	deadline := time.Now().Add(dialTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := conn.SetDeadline(deadline); err != nil {
		return fmt.Errorf("%w to %s: %w", ErrConnect, cfg.Addr, err)
	}
	if _, err := conn.Write(resp.AppendCommandStrings(nil, "AUTH", cfg.Password)); err != nil {
		return fmt.Errorf("%w to %s: sending AUTH: %w", ErrConnect, cfg.Addr, err)
	}
	v, err := resp.NewReader(conn).ReadValue()
	if err != nil {
		return fmt.Errorf("%w to %s: reading AUTH reply: %w", ErrConnect, cfg.Addr, err)
	}
	if v.Type == '-' {
		return fmt.Errorf("%w by %s: %s", ErrAuth, cfg.Addr, v.Str)
	}
	if !stop() {
		return fmt.Errorf("%w to %s: %w", ErrConnect, cfg.Addr, context.Cause(ctx))
	}
	return conn.SetDeadline(time.Time{})
}
