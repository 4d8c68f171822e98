package mutants

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// ErrStale is the error for a mutant whose old text does not occur exactly
// once in its file: the code it mutates has moved or changed, and the
// entry must be rewritten before it tests anything again.
var ErrStale = errors.New("lockstep: stale mutant")

// Apply returns src with m's old text replaced by its new text, or an
// error wrapping ErrStale when the old text occurs other than once.
func Apply(m Mutant, src string) (string, error) {
	switch n := strings.Count(src, m.Old); n {
	case 1:
		return strings.Replace(src, m.Old, m.New, 1), nil
	case 0:
		return "", fmt.Errorf("%w: old text not found in %s", ErrStale, m.File)
	default:
		return "", fmt.Errorf("%w: old text occurs %d times in %s", ErrStale, n, m.File)
	}
}

// Status is the outcome of one mutant.
type Status string

// The outcomes. TIMEOUT counts as caught (a test hung on the bug) but is
// flagged, since a hang is a poorer signal than a failed assertion.
const (
	Caught   Status = "CAUGHT"
	Survived Status = "SURVIVED"
	Stale    Status = "STALE"
	Broken   Status = "BROKEN"
	Timeout  Status = "TIMEOUT"
	Skipped  Status = "SKIPPED"
	Applies  Status = "APPLIES" // -check: the old text occurs once; nothing run
)

// Fails reports whether the status makes the run fail: a survivor is a
// missing test, and a stale or broken mutant tests nothing.
func (s Status) Fails() bool { return s == Survived || s == Stale || s == Broken }

// Verdict is what a `go test` run says about a mutant: its status, the
// test that caught it, and the first lines naming a seed and a replay
// command, so that a caught simulation can be replayed by hand.
type Verdict struct {
	Status Status
	Test   string // first failing test, or what hung, or the compile error
	Seed   string // first output line that mentions a seed or replay
	Replay string // first line that mentions a replay, if not Seed itself
}

var (
	failLine     = regexp.MustCompile(`^\s*--- FAIL: (\S+)`)
	passLine     = regexp.MustCompile(`^--- PASS: `)
	skipLine     = regexp.MustCompile(`^--- SKIP: `)
	seedLine     = regexp.MustCompile(`(?i)\b(seed|replay)\b`)
	replayLine   = regexp.MustCompile(`(?i)\breplay\b`)
	noTests      = regexp.MustCompile(`\[no tests to run\]|no tests to run`)
	buildFailed  = regexp.MustCompile(`\[(build|setup) failed\]`)
	compileError = regexp.MustCompile(`^\S+\.go:\d+:\d+: `)
)

// Judge reads the combined output of `go test -v` and whether it passed.
// A run that compiles nothing is BROKEN; one that matched no test, or
// whose every test skipped (an e2e test without redis-cli, say), is STALE,
// since it tested nothing; a hang reported by the test binary's -timeout
// is TIMEOUT; any other failure CAUGHT.
func Judge(out string, passed bool) Verdict {
	lines := strings.Split(out, "\n")
	var v Verdict
	switch {
	case passed && noTests.MatchString(out):
		v.Status, v.Test = Stale, "no test matches the -run pattern"
	case passed && firstMatch(lines, passLine) == "" && firstMatch(lines, skipLine) != "":
		v.Status, v.Test = Stale, "every test skipped: "+firstMatch(lines, skipLine)
	case passed:
		v.Status = Survived
	case buildFailed.MatchString(out):
		v.Status, v.Test = Broken, firstMatch(lines, compileError)
	case strings.Contains(out, "panic: test timed out"):
		v.Status, v.Test = Timeout, hungTest(lines)
	default:
		v.Status, v.Test = Caught, firstFailure(lines)
	}
	if v.Status == Caught || v.Status == Timeout {
		sec := section(lines, v.Test)
		v.Seed = seedOf(sec, seedLine)
		if r := seedOf(sec, replayLine); r != v.Seed {
			v.Replay = r
		}
	}
	return v
}

// section is the output of test's top-level test, from its RUN line to
// its result line, so that the seed reported is the failing test's, not
// one another test logged; all of lines if the RUN line is not found.
func section(lines []string, test string) []string {
	top, _, _ := strings.Cut(test, "/")
	start := -1
	for i, l := range lines {
		f := strings.Fields(l)
		switch {
		case start < 0 && len(f) == 3 && f[0] == "===" && f[1] == "RUN" && f[2] == top:
			start = i
		case start >= 0 && len(f) >= 3 && f[0] == "---" && f[2] == top:
			return lines[start : i+1]
		}
	}
	if start < 0 {
		return lines
	}
	return lines[start:]
}

// firstMatch is the first line re matches, trimmed, or "".
func firstMatch(lines []string, re *regexp.Regexp) string {
	for _, l := range lines {
		if re.MatchString(l) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// seedOf is the first line re matches that is not a test's FAIL line
// (subtests are often named after their seed).
func seedOf(lines []string, re *regexp.Regexp) string {
	for _, l := range lines {
		if re.MatchString(l) && !failLine.MatchString(l) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// firstFailure names the first failing test, descending into its first
// failing subtest (go test prints a parent's FAIL line before its
// subtests'), or the panic when no test reported a failure.
func firstFailure(lines []string) string {
	name := ""
	for _, l := range lines {
		sm := failLine.FindStringSubmatch(l)
		if sm == nil {
			continue
		}
		if name == "" || strings.HasPrefix(sm[1], name+"/") {
			name = sm[1]
			continue
		}
		break
	}
	if name != "" {
		return name
	}
	if p := firstMatch(lines, regexp.MustCompile(`^panic: `)); p != "" {
		return p
	}
	return "failed without a --- FAIL line"
}

// hungTest names the tests the binary's timeout panic lists as running.
func hungTest(lines []string) string {
	for i, l := range lines {
		if strings.TrimSpace(l) != "running tests:" {
			continue
		}
		var names []string
		for _, r := range lines[i+1:] {
			f := strings.Fields(r)
			if len(f) == 0 || !strings.HasPrefix(f[0], "Test") {
				break
			}
			names = append(names, f[0])
		}
		return strings.Join(names, ", ")
	}
	return "test binary timed out"
}
