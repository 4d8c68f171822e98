// Command mutants applies each injected bug of a list (scripts/mutants.txt)
// to a private copy of the tree, one at a time, and reports which test
// catches it. A mutant that survives marks a missing test. Run it through
// scripts/mutants; see docs/TESTING.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/lockstep/lockstep/internal/mutants"
)

// options are the command-line flags.
type options struct {
	list     string
	jobs     int
	markdown bool
	fast     bool
	check    bool
	verbose  bool
}

func main() {
	var o options
	flag.StringVar(&o.list, "list", "scripts/mutants.txt", "the list of mutants, relative to the module root")
	flag.IntVar(&o.jobs, "j", 1, "mutants tested at once, each in its own copy of the tree")
	flag.BoolVar(&o.markdown, "markdown", false, "print the final table as Markdown")
	flag.BoolVar(&o.fast, "fast", false, "skip mutants marked slow (process-level e2e tests)")
	flag.BoolVar(&o.check, "check", false, "only check that every old text occurs exactly once; run nothing")
	flag.BoolVar(&o.verbose, "v", false, "print the whole go test output of every mutant")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: scripts/mutants [flags] [name-prefix-or-regexp ...]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code, err := run(ctx, o, flag.Args())
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutants:", err)
		os.Exit(2)
	}
	os.Exit(code)
}

// run tests the selected mutants and prints the table; its result is the
// exit status: 1 when a mutant that is not pending survived, is stale or
// does not compile.
func run(ctx context.Context, o options, patterns []string) (int, error) {
	root, err := os.Getwd()
	if err != nil {
		return 0, fmt.Errorf("working directory: %w", err)
	}
	list, err := readList(o.list)
	if err != nil {
		return 0, err
	}
	sel, err := mutants.Select(list, patterns)
	if err != nil {
		return 0, err
	}
	if len(sel) == 0 {
		return 0, errors.New("no mutant matches")
	}
	var results []mutants.Result
	if o.check {
		results = checkAll(root, sel)
	} else {
		results, err = testAll(ctx, root, sel, o)
		if err != nil {
			return 0, err
		}
	}
	write := mutants.WriteTable
	if o.markdown {
		write = mutants.WriteMarkdown
	}
	if err := write(os.Stdout, results); err != nil {
		return 0, fmt.Errorf("print table: %w", err)
	}
	fmt.Fprintln(os.Stderr, mutants.Summary(results))
	if mutants.Failed(results) {
		return 1, nil
	}
	return 0, nil
}

// readList parses the list file.
func readList(path string) ([]mutants.Mutant, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open list: %w", err)
	}
	defer f.Close()
	list, err := mutants.Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return list, nil
}

// checkAll applies every mutant to the working tree's text in memory, so
// a refactor that moved mutated code shows up in a second, not a run.
func checkAll(root string, sel []mutants.Mutant) []mutants.Result {
	var results []mutants.Result
	for _, m := range sel {
		r := mutants.Result{Mutant: m, Verdict: mutants.Verdict{Status: mutants.Applies}}
		if _, err := applyIn(root, m, false); err != nil {
			r.Status, r.Test = mutants.Stale, err.Error()
		}
		results = append(results, r)
	}
	return results
}

// progress prints one finished mutant to stderr as the run goes.
func progress(w io.Writer, i, n int, r mutants.Result, out string, verbose bool) {
	fmt.Fprintf(w, "[%d/%d] %-9s %s  %s (%.0fs)\n", i, n, r.Status, r.Name, r.Test, r.Elapsed.Seconds())
	if r.Status == mutants.Caught || r.Status == mutants.Timeout {
		for _, l := range []string{r.Seed, r.Replay} {
			if l != "" {
				fmt.Fprintf(w, "          %s\n", l)
			}
		}
	}
	if verbose && out != "" {
		fmt.Fprintf(w, "%s\n", out)
	}
}
