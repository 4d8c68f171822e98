// Package mutants holds the pure half of the mutation-testing tool
// (scripts/mutants): reading the list of mutants, applying one to a file's
// text, and reading a verdict out of `go test` output. The half that copies
// trees and runs commands lives in ./cmd, so everything here is testable
// without a Go toolchain or a disk.
//
// A mutant is a deliberate bug, written as an exact search-and-replace
// rather than a diff: an exact string survives unrelated edits around it,
// and when a refactor moves or rewrites it, the old text no longer occurs
// exactly once and the mutant is reported STALE instead of silently
// testing nothing.
package mutants

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// ErrSyntax is the error for a list the parser cannot read; it is wrapped
// with the line number.
var ErrSyntax = errors.New("lockstep: mutants list")

// DefaultTimeout is the test timeout of a mutant that names none.
const DefaultTimeout = 5 * time.Minute

// Mutant is one injected bug and the test expected to catch it.
type Mutant struct {
	Name    string        // short, unique; selects the mutant on the command line
	Class   string        // one line: the class of bug it stands for
	File    string        // slash-separated path from the module root
	Old     string        // exact text, which must occur once in File
	New     string        // its replacement
	Pkg     string        // package `go test` runs, e.g. ./protocol/chain
	Run     string        // the -run pattern; empty runs every test of Pkg
	Args    []string      // further `go test` flags, e.g. -short
	Timeout time.Duration // the -timeout of the test binary
	Slow    bool          // skipped by -fast (process-level tests)
	Pending bool          // reported but not counted in the exit status
	Note    string        // why it is pending, or anything else worth saying
	Line    int           // where its entry starts in the list
}

// Parse reads a list of mutants. The format is one "key: value" per line,
// an entry starting at each "name:" line; blank lines and lines starting
// with # between keys are ignored. old and new take either the rest of
// the line (trimmed) or, written "old: <<TAG", every following line
// verbatim up to a line that is exactly TAG, so multi-line and
// whitespace-exact texts can be written as they are in the source.
func Parse(r io.Reader) ([]Mutant, error) {
	p := &parser{sc: bufio.NewScanner(r)}
	p.sc.Buffer(make([]byte, 64*1024), 1<<20)
	for p.sc.Scan() {
		p.line++
		if err := p.parseLine(p.sc.Text()); err != nil {
			return nil, err
		}
	}
	if err := p.sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSyntax, err)
	}
	if err := p.flush(); err != nil {
		return nil, err
	}
	return p.list, nil
}

// parser is Parse's state: the entry being read and those finished.
type parser struct {
	sc   *bufio.Scanner
	line int
	cur  *Mutant
	list []Mutant
	seen map[string]bool
	// hasNew tells an empty new (the mutant deletes the old text) from
	// a forgotten one.
	hasNew bool
}

// errorf wraps ErrSyntax with the current line number.
func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: line %d: %s", ErrSyntax, p.line, fmt.Sprintf(format, args...))
}

// parseLine reads one line outside a heredoc.
func (p *parser) parseLine(text string) error {
	trimmed := strings.TrimSpace(text)
	if trimmed == "" || strings.HasPrefix(trimmed, "#") {
		return nil
	}
	key, val, ok := strings.Cut(trimmed, ":")
	if !ok {
		return p.errorf("want key: value, got %q", trimmed)
	}
	key, val = strings.TrimSpace(key), strings.TrimSpace(val)
	if key == "name" {
		if err := p.flush(); err != nil {
			return err
		}
		p.cur = &Mutant{Name: val, Timeout: DefaultTimeout, Line: p.line}
		p.hasNew = false
		return nil
	}
	if p.cur == nil {
		return p.errorf("%s: before the first name:", key)
	}
	if (key == "old" || key == "new") && strings.HasPrefix(val, "<<") {
		body, err := p.heredoc(strings.TrimSpace(val[2:]))
		if err != nil {
			return err
		}
		val = body
	}
	return p.set(key, val)
}

// heredoc reads lines verbatim up to a line that is exactly tag.
func (p *parser) heredoc(tag string) (string, error) {
	if tag == "" {
		return "", p.errorf("<< without an end tag")
	}
	start := p.line
	var lines []string
	for p.sc.Scan() {
		p.line++
		if p.sc.Text() == tag {
			return strings.Join(lines, "\n"), nil
		}
		lines = append(lines, p.sc.Text())
	}
	return "", fmt.Errorf("%w: line %d: no %s ends the text begun here", ErrSyntax, start, tag)
}

// set stores one key of the current entry.
func (p *parser) set(key, val string) error {
	m := p.cur
	var err error
	switch key {
	case "class":
		m.Class = val
	case "file":
		m.File = val
	case "old":
		m.Old = val
	case "new":
		m.New, p.hasNew = val, true
	case "pkg":
		m.Pkg = val
	case "run":
		m.Run = val
	case "args":
		m.Args = strings.Fields(val)
	case "note":
		m.Note = val
	case "timeout":
		m.Timeout, err = time.ParseDuration(val)
		if err != nil {
			return p.errorf("timeout: %v", err)
		}
	case "flags":
		return p.setFlags(val)
	default:
		return p.errorf("unknown key %q", key)
	}
	return nil
}

// setFlags reads "flags: slow, pending".
func (p *parser) setFlags(val string) error {
	for _, f := range strings.FieldsFunc(val, func(r rune) bool { return r == ',' || r == ' ' }) {
		switch f {
		case "slow":
			p.cur.Slow = true
		case "pending":
			p.cur.Pending = true
		default:
			return p.errorf("unknown flag %q", f)
		}
	}
	return nil
}

// flush checks the finished entry and appends it to the list.
func (p *parser) flush() error {
	m := p.cur
	if m == nil {
		return nil
	}
	p.cur = nil
	missing := []string{}
	for _, f := range []struct{ key, val string }{
		{"name", m.Name}, {"class", m.Class}, {"file", m.File}, {"old", m.Old}, {"pkg", m.Pkg},
	} {
		if f.val == "" {
			missing = append(missing, f.key)
		}
	}
	if !p.hasNew {
		missing = append(missing, "new")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: mutant at line %d lacks %s", ErrSyntax, m.Line, strings.Join(missing, ", "))
	}
	if m.Old == m.New {
		return fmt.Errorf("%w: mutant %s at line %d: old and new are the same", ErrSyntax, m.Name, m.Line)
	}
	if p.seen == nil {
		p.seen = map[string]bool{}
	}
	if p.seen[m.Name] {
		return fmt.Errorf("%w: mutant %s at line %d: name used twice", ErrSyntax, m.Name, m.Line)
	}
	p.seen[m.Name] = true
	p.list = append(p.list, *m)
	return nil
}
