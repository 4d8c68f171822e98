package mutants

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const sample = `# a comment
name: chain-stale-epoch
class: an older epoch accepted by Step
file: protocol/chain/step.go
old: if m.Epoch != c.epoch {
new: if m.Epoch > c.epoch {
pkg: ./protocol/chain
run: ^TestSim
timeout: 90s

name: e2e-multi
class: two lines, tabs kept
file: replica/x.go
old: <<EOF
	a := 1

	b := 2
EOF
new: <<END
	a := 2
END
pkg: ./e2e
args: -short -v
flags: slow, pending
note: fixed elsewhere
`

func TestParseSample(t *testing.T) {
	list, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 {
		t.Fatalf("got %d mutants, want 2", len(list))
	}
	a, b := list[0], list[1]
	if a.Name != "chain-stale-epoch" || a.Old != "if m.Epoch != c.epoch {" || a.New != "if m.Epoch > c.epoch {" {
		t.Errorf("first mutant: %+v", a)
	}
	if a.Timeout != 90*time.Second || a.Run != "^TestSim" || a.Slow || a.Pending || a.Line != 2 {
		t.Errorf("first mutant: %+v", a)
	}
	if b.Old != "\ta := 1\n\n\tb := 2" || b.New != "\ta := 2" {
		t.Errorf("heredoc texts: old %q new %q", b.Old, b.New)
	}
	if !b.Slow || !b.Pending || b.Timeout != DefaultTimeout || strings.Join(b.Args, " ") != "-short -v" || b.Note != "fixed elsewhere" {
		t.Errorf("second mutant: %+v", b)
	}
}

func TestParseEmptyNewDeletes(t *testing.T) {
	list, err := Parse(strings.NewReader("name: x\nclass: c\nfile: f.go\nold: y()\nnew:\npkg: ./p\n"))
	if err != nil {
		t.Fatal(err)
	}
	if list[0].New != "" {
		t.Errorf("new = %q, want empty", list[0].New)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"key before name", "class: x\n", "before the first name"},
		{"unknown key", "name: x\nbogus: 1\n", "unknown key"},
		{"missing fields", "name: x\nclass: c\n", "lacks file, old, pkg, new"},
		{"unterminated heredoc", "name: x\nold: <<EOF\nfoo\n", "no EOF ends"},
		{"heredoc without tag", "name: x\nold: <<\n", "without an end tag"},
		{"same text", "name: x\nclass: c\nfile: f\nold: a\nnew: a\npkg: p\n", "the same"},
		{"duplicate", "name: x\nclass: c\nfile: f\nold: a\nnew: b\npkg: p\nname: x\nclass: c\nfile: f\nold: a\nnew: b\npkg: p\n", "used twice"},
		{"bad timeout", "name: x\ntimeout: soon\n", "timeout"},
		{"bad flag", "name: x\nflags: quick\n", "unknown flag"},
		{"no colon", "name: x\njunk\n", "want key: value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.in))
			if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrSyntax mentioning %q", err, tc.want)
			}
		})
	}
}
