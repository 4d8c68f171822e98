package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestAdvertisedAddresses: nodes that listen on wildcards publish
// addresses others can dial, not 0.0.0.0 or [::], and --advertise-addr
// replaces the published host: the group forms, and a write sent to any
// node reaches the head at the address it advertised.
func TestAdvertisedAddresses(t *testing.T) {
	c := startClusterArgs(t, 3, chainProto, func(name string) []string {
		args := []string{"--listen", "0.0.0.0:0", "--peer-addr", "0.0.0.0:0"}
		if name == "n1" {
			args = append(args, "--advertise-addr", "127.0.0.2", "--advertise-peer-addr", "127.0.0.3")
		}
		return args
	})
	st := c.status()
	for _, n := range st.Nodes {
		host, port, err := net.SplitHostPort(n.ClientAddr)
		if err != nil {
			t.Fatalf("%s publishes %q: %v", n.Name, n.ClientAddr, err)
		}
		if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
			t.Errorf("%s publishes the client address %q, which no one can dial", n.Name, n.ClientAddr)
		}
		_, bound, _ := net.SplitHostPort(c.procs[n.Name].Addr)
		if n.Name == "n1" && (host != "127.0.0.2" || port != bound) {
			t.Errorf("n1 publishes %q; want --advertise-addr's host 127.0.0.2 with its bound port %s", n.ClientAddr, bound)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, name := range []string{"n1", "n2", "n3"} {
		rc := redis.NewClient(&redis.Options{Addr: c.procs[name].Addr, MaxRetries: -1})
		if err := rc.Set(ctx, "k-"+name, "v", 0).Err(); err != nil {
			t.Fatalf("SET through %s: %v", name, err)
		}
		_ = rc.Close()
	}
}

// TestRoleAndReplicationInfo: ROLE and INFO replication describe the
// group in Redis's terms through every node: the head is the master with
// the other two as replicas, and each of those names the head's address
// as its master.
func TestRoleAndReplicationInfo(t *testing.T) {
	c := startClusterWith(t, 3, chainProto)
	st := c.waitMembers(3, 30*time.Second)
	head := st.byRole("head")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, name := range []string{"n1", "n2", "n3"} {
		rc := redis.NewClient(&redis.Options{Addr: c.procs[name].Addr, MaxRetries: -1})
		role, err := rc.Do(ctx, "ROLE").Slice()
		if err != nil {
			t.Fatalf("ROLE at %s: %v", name, err)
		}
		info, err := rc.Info(ctx, "replication").Result()
		if err != nil {
			t.Fatal(err)
		}
		_ = rc.Close()
		if name == head {
			if replicas, ok := role[2].([]any); role[0] != "master" || !ok || len(replicas) != 2 || !strings.Contains(info, "connected_slaves:2") {
				t.Errorf("ROLE at the head %s = %v, INFO:\n%s; want master with 2 replicas", name, role, info)
			}
			continue
		}
		_, headPort, _ := net.SplitHostPort(c.procs[head].Addr)
		if role[0] != "slave" || role[3] != "connected" || fmt.Sprint(role[2]) != headPort ||
			!strings.Contains(info, "master_port:"+headPort) || !strings.Contains(info, "master_link_status:up") {
			t.Errorf("ROLE at %s = %v, INFO:\n%s; want a connected replica of the head (port %s)", name, role, info, headPort)
		}
	}
}
