package mutants

import (
	"fmt"
	"io"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"
)

// Select returns the mutants a command line names: every one when
// patterns is empty, else those whose name starts with a pattern or
// matches it as a regular expression (so "chain-" and "^pb-.*epoch" both
// work).
func Select(list []Mutant, patterns []string) ([]Mutant, error) {
	if len(patterns) == 0 {
		return list, nil
	}
	res := make([]*regexp.Regexp, len(patterns))
	for i, p := range patterns {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", p, err)
		}
		res[i] = re
	}
	var out []Mutant
	for _, m := range list {
		for i, p := range patterns {
			if strings.HasPrefix(m.Name, p) || res[i].MatchString(m.Name) {
				out = append(out, m)
				break
			}
		}
	}
	return out, nil
}

// Result is a mutant's verdict and how long it took to reach.
type Result struct {
	Mutant
	Verdict
	Elapsed time.Duration
}

// label is the status as printed: a pending mutant says so, since it
// does not count against the run.
func (r Result) label() string {
	if r.Pending {
		return string(r.Status) + " (pending)"
	}
	return string(r.Status)
}

// seconds is the elapsed time as the table shows it.
func (r Result) seconds() string {
	if r.Status == Stale || r.Status == Skipped || r.Status == Applies {
		return "-"
	}
	return fmt.Sprintf("%.0f", r.Elapsed.Seconds())
}

// WriteTable prints results as aligned columns for a terminal.
func WriteTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "MUTANT\tSTATUS\tCAUGHT BY / DETAIL\tSECONDS")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.label(), r.Test, r.seconds())
	}
	return tw.Flush()
}

// WriteMarkdown prints results as a Markdown table for docs/TESTING.md.
func WriteMarkdown(w io.Writer, results []Result) error {
	var b strings.Builder
	b.WriteString("| mutant | bug class | status | caught by | s |\n")
	b.WriteString("|---|---|---|---|---:|\n")
	for _, r := range results {
		test := r.Test
		if test != "" {
			test = "`" + test + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n",
			r.Name, mdEscape(r.Class), r.label(), test, r.seconds())
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// mdEscape keeps a cell's text from ending the cell.
func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// Summary counts results by status, e.g. "12 CAUGHT, 1 SURVIVED".
func Summary(results []Result) string {
	order := []Status{Caught, Timeout, Survived, Stale, Broken, Skipped, Applies}
	n := map[Status]int{}
	for _, r := range results {
		n[r.Status]++
	}
	var parts []string
	for _, s := range order {
		if n[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n[s], s))
		}
	}
	return strings.Join(parts, ", ")
}

// Failed reports whether any result that is not pending fails the run.
func Failed(results []Result) bool {
	for _, r := range results {
		if !r.Pending && r.Status.Fails() {
			return true
		}
	}
	return false
}
