package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockstep/lockstep/coord"
)

// deadPid returns the pid of a process that has exited and been reaped.
func deadPid(t *testing.T) int {
	t.Helper()
	bin, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no 'true' binary to start and reap")
	}
	cmd := exec.Command(bin)
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// closedAddr is a local address that accepts no connection.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestFenceRequiresProofOfDeath registers nodes with an embedded etcd and
// runs the fence command against them. Fencing revokes the lease of a
// process that may still be serving reads, so it must act only on proof
// of death: a registration made on this host whose pid is not running.
// A live process whose client port is unreachable (here: closed), a
// process registered on another host, and a record without a host are
// refused and stay registered; only the dead local process is fenced.
func TestFenceRequiresProofOfDeath(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := coord.StartEmbedded(ctx, coord.EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	cli, err := coord.Dial(e.Endpoints(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	host, err := os.Hostname()
	if err != nil {
		t.Skip("no host name:", err)
	}
	dead := deadPid(t)
	for _, n := range []coord.NodeInfo{
		{Name: "live", Pid: os.Getpid(), Host: host, ClientAddr: closedAddr(t)},
		{Name: "remote", Pid: dead, Host: host + "-elsewhere", ClientAddr: closedAddr(t)},
		{Name: "nohost", Pid: dead, ClientAddr: closedAddr(t)},
		{Name: "dead", Pid: dead, Host: host, ClientAddr: closedAddr(t)},
	} {
		s, err := coord.NewSession(ctx, cli, coord.SessionConfig{Cluster: "c", Group: "g", TTL: 30 * time.Second, Node: n})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close(context.WithoutCancel(ctx))
	}
	fence := func(name string) (string, error) {
		var out bytes.Buffer
		err := runFence(ctx, &fenceFlags{target: etcdTarget{etcd: strings.Join(e.Endpoints(), ",")}, cluster: "c", name: name}, &out)
		return out.String(), err
	}
	for name, why := range map[string]string{"live": "is still running", "remote": "not here", "nohost": "no host"} {
		out, err := fence(name)
		if err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("fence %s: %v (output %q); want a refusal saying %q", name, err, out, why)
		}
	}
	if out, err := fence("dead"); err != nil || !strings.Contains(out, "fenced") {
		t.Fatalf("fence of a dead local process: %v (output %q)", err, out)
	}
	nodes, err := coord.ListNodes(ctx, cli, "c")
	if err != nil {
		t.Fatal(err)
	}
	left := map[string]bool{}
	for _, n := range nodes {
		left[n.Name] = true
	}
	if !left["live"] || !left["remote"] || !left["nohost"] || left["dead"] {
		t.Fatalf("registered after fencing: %v; want live, remote and nohost kept and dead gone", left)
	}
}

// TestProveDead checks the proof rule on its own: only a registration
// from this host whose pid signal 0 reports gone (ESRCH) is proof; a pid
// that runs, even as another user (EPERM), is refused with errNoProof.
func TestProveDead(t *testing.T) {
	gone := func(int) error { return syscall.ESRCH }
	for _, tc := range []struct {
		name    string
		n       coord.NodeInfo
		signal0 func(int) error
		ok      bool
	}{
		{"dead here", coord.NodeInfo{Name: "n1", Pid: 123, Host: "h"}, gone, true},
		{"running", coord.NodeInfo{Name: "n1", Pid: 123, Host: "h"}, func(int) error { return nil }, false},
		{"another user's", coord.NodeInfo{Name: "n1", Pid: 123, Host: "h"}, func(int) error { return syscall.EPERM }, false},
		{"other host", coord.NodeInfo{Name: "n1", Pid: 123, Host: "x"}, gone, false},
		{"no host", coord.NodeInfo{Name: "n1", Pid: 123}, gone, false},
		{"no pid", coord.NodeInfo{Name: "n1", Host: "h"}, gone, false},
	} {
		err := proveDead(tc.n, "h", tc.signal0)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, errNoProof)) {
			t.Errorf("%s: proveDead = %v, want proof %v (refusals wrapping errNoProof)", tc.name, err, tc.ok)
		}
	}
}
