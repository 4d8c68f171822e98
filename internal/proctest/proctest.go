// Package proctest starts real lockstep and redis-server processes for
// tests, the way a user would run them, and kills them the way a machine
// failure would (SIGKILL).
package proctest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BuildLockstep compiles ./cmd/lockstep into dir and returns the binary's
// path. root is the module root.
func BuildLockstep(root, dir string) (string, error) {
	bin := filepath.Join(dir, "lockstep")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/lockstep")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// ModuleRoot finds the directory holding go.mod above the working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Proc is a running child process with its log captured.
type Proc struct {
	Addr string // the client address it reported
	cmd  *exec.Cmd
	done chan struct{}
	err  error

	mu  sync.Mutex
	log strings.Builder
}

var readyRE = regexp.MustCompile(`msg=ready addr=(\S+)`)

// StartLockstep runs `bin server args...` and waits until it logs its
// ready line. The process is killed when the test ends.
func StartLockstep(t testing.TB, bin string, args ...string) *Proc {
	t.Helper()
	p, err := start(bin, append([]string{"server"}, args...), readyRE, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Kill() })
	return p
}

func start(bin string, args []string, ready *regexp.Regexp, timeout time.Duration) (*Proc, error) {
	p := &Proc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p.cmd.Stdout = io.Discard
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	addr := make(chan string, 1)
	go p.capture(stderr, ready, addr)
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	select {
	case a := <-addr:
		p.Addr = a
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited before ready: %v\n%s", bin, p.err, p.Log())
	case <-time.After(timeout):
		p.Kill()
		return nil, fmt.Errorf("%s not ready after %v\n%s", bin, timeout, p.Log())
	}
}

func (p *Proc) capture(r io.Reader, ready *regexp.Regexp, addr chan<- string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sent := false
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		p.log.WriteString(line + "\n")
		p.mu.Unlock()
		if m := ready.FindStringSubmatch(line); !sent && m != nil {
			addr <- m[1]
			sent = true
		}
	}
}

// Log returns what the process has written to stderr so far.
func (p *Proc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig without waiting.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Wait waits for the process to exit on its own, up to ctx's deadline, and
// returns its exit error.
func (p *Proc) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// FreePort asks the OS for a free TCP port on 127.0.0.1. For programs that
// cannot report the port they bound (redis-server), there is a small window
// in which another process could take it.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// StartRedis runs a throwaway redis-server on a free port with persistence
// off, or skips the test with a message when redis-server is not installed.
func StartRedis(t testing.TB, extra ...string) *Proc {
	t.Helper()
	bin := NeedTool(t, "redis-server", "redis-server")
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir()}, extra...)
	p := &Proc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Stdout = io.Discard
	p.cmd.Stderr = io.Discard
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(p.Kill)
	p.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	if err := WaitDial(p.Addr, 10*time.Second); err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	return p
}

// WaitDial polls until addr accepts a TCP connection or timeout passes.
func WaitDial(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// NeedTool returns the path of an installed program or skips the test,
// saying which Debian package provides it.
func NeedTool(t testing.TB, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed; install it with: apt-get install %s", name, pkg)
	}
	return path
}

// Eventually polls cond every 10ms until it holds, failing the test if it
// does not within timeout. It is how tests wait for a state: never a bare
// sleep.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stopped reports whether process pid is stopped (by SIGSTOP), from
// /proc: a signal is delivered asynchronously, so a test that freezes a
// process waits for this before relying on it.
func Stopped(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "State:") {
			return strings.Contains(line, "T (stopped)")
		}
	}
	return false
}

// Children lists the processes whose parent is pid, from /proc: a test
// that must kill a process's helpers (a server's watchdog) finds them here.
func Children(pid int) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var kids []int
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // gone meanwhile
		}
		// "pid (comm) state ppid ...": comm may hold spaces and parentheses,
		// so the fields after it are read from the last ')'.
		var self, ppid int
		var state string
		if _, err := fmt.Sscan(string(b), &self); err != nil {
			continue
		}
		after := b[strings.LastIndexByte(string(b), ')')+1:]
		if _, err := fmt.Sscan(string(after), &state, &ppid); err == nil && ppid == pid {
			kids = append(kids, self)
		}
	}
	return kids
}

// Seed returns the seed of a randomized test: LOCKSTEP_SEED if set, else
// one from the clock, logged with the command that replays it (pkg is the
// package's path from the module root, as go test takes it: ./e2e/).
func Seed(t testing.TB, pkg string) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("LOCKSTEP_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("LOCKSTEP_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (replay: LOCKSTEP_SEED=%d go test -race -count=1 -run '^%s$' %s)", seed, seed, t.Name(), pkg)
	return seed
}
