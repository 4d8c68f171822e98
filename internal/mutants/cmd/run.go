package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"time"

	"github.com/lockstep/lockstep/internal/mutants"
)

// compileTimeout bounds the compile check and, on top of a mutant's test
// timeout, the time go test may take to build before the binary's own
// -timeout starts counting.
const compileTimeout = 5 * time.Minute

// job is one mutant handed to a worker, with its place in the list.
type job struct {
	i int
	m mutants.Mutant
}

// finished is a worker's answer: the result and the raw test output.
type finished struct {
	i   int
	r   mutants.Result
	out string
}

// testAll runs the selected mutants on o.jobs workers, each owning one
// copy of the tree for the whole run (so the build cache serves every
// mutant after its first), and returns the results in list order.
func testAll(ctx context.Context, root string, sel []mutants.Mutant, o options) ([]mutants.Result, error) {
	jobs := make(chan job)
	done := make(chan finished)
	workers := max(1, min(o.jobs, len(sel)))
	var dirs []string
	defer func() {
		for _, d := range dirs {
			os.RemoveAll(d)
		}
	}()
	for range workers {
		dir, err := copyTree(root)
		if err != nil {
			return nil, err
		}
		dirs = append(dirs, dir)
		go worker(ctx, dir, jobs, done)
	}
	go func() {
		defer close(jobs)
		for i, m := range sel {
			if o.fast && m.Slow {
				done <- finished{i: i, r: mutants.Result{Mutant: m, Verdict: mutants.Verdict{Status: mutants.Skipped, Test: "slow; -fast"}}}
				continue
			}
			select {
			case jobs <- job{i, m}:
			case <-ctx.Done():
				return
			}
		}
	}()
	results := make([]mutants.Result, len(sel))
	for n := 1; n <= len(sel); n++ {
		select {
		case f := <-done:
			results[f.i] = f.r
			progress(os.Stderr, n, len(sel), f.r, f.out, o.verbose)
		case <-ctx.Done():
			return nil, fmt.Errorf("interrupted: %w", ctx.Err())
		}
	}
	return results, nil
}

// worker tests mutants in dir until jobs closes.
func worker(ctx context.Context, dir string, jobs <-chan job, done chan<- finished) {
	for j := range jobs {
		start := time.Now()
		v, out := testOne(ctx, dir, j.m)
		r := mutants.Result{Mutant: j.m, Verdict: v, Elapsed: time.Since(start)}
		select {
		case done <- finished{i: j.i, r: r, out: out}:
		case <-ctx.Done():
			return
		}
	}
}

// testOne applies m in dir, checks that the package still compiles, runs
// its tests and puts the file back, whatever happened. A file that cannot
// be put back would leave the mutant in every later test of this copy, so
// that ends the run.
func testOne(ctx context.Context, dir string, m mutants.Mutant) (mutants.Verdict, string) {
	orig, err := applyIn(dir, m, true)
	if err != nil {
		if errors.Is(err, mutants.ErrStale) {
			return mutants.Verdict{Status: mutants.Stale, Test: err.Error()}, ""
		}
		return mutants.Verdict{Status: mutants.Broken, Test: err.Error()}, ""
	}
	file := filepath.Join(dir, filepath.FromSlash(m.File))
	defer func() {
		if err := os.WriteFile(file, orig, 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "mutants: cannot undo %s in %s: %v\n", m.Name, dir, err)
			os.Exit(2)
		}
	}()
	build := []string{"build", "./" + path.Dir(m.File)}
	if out, err := goCmd(ctx, dir, compileTimeout, build); err != nil {
		v := mutants.Judge(out+"\n[build failed]", false)
		return mutants.Verdict{Status: mutants.Broken, Test: v.Test}, out
	}
	// -v, so that a run whose every test skipped is told from a pass.
	args := []string{"test", "-v", "-count=1", "-timeout", m.Timeout.String()}
	if m.Run != "" {
		args = append(args, "-run", m.Run)
	}
	// The package first: go test hands everything after a flag it does not
	// know (a test binary's own, such as nodesim's -seeds) to the binary.
	args = append(append(args, m.Pkg), m.Args...)
	out, err := goCmd(ctx, dir, m.Timeout+compileTimeout, args)
	if errors.Is(err, context.DeadlineExceeded) {
		return mutants.Verdict{Status: mutants.Timeout, Test: "killed after " + (m.Timeout + compileTimeout).String()}, out
	}
	return mutants.Judge(out, err == nil), out
}

// applyIn applies m to its file under dir and returns the file's original
// bytes; with write false it only checks that the mutant applies.
func applyIn(dir string, m mutants.Mutant, write bool) ([]byte, error) {
	file := filepath.Join(dir, filepath.FromSlash(m.File))
	orig, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", mutants.ErrStale, m.Name, err)
	}
	mutated, err := mutants.Apply(m, string(orig))
	if err != nil || !write {
		return orig, err
	}
	if err := os.WriteFile(file, []byte(mutated), 0o644); err != nil {
		return nil, fmt.Errorf("write mutant %s: %w", m.Name, err)
	}
	return orig, nil
}

// goCmd runs the go command in dir with a deadline, killing its whole
// process group when the deadline passes (go test's children, and the
// servers e2e tests start, go with it). It returns the combined output.
func goCmd(ctx context.Context, dir string, limit time.Duration, args []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	ownGroup(cmd)
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return buf.String(), ctx.Err()
	}
	if err != nil {
		return buf.String(), fmt.Errorf("go %s: %w", args[0], err)
	}
	return buf.String(), nil
}
