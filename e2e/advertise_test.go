package e2e

import (
	"context"
	"net"
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
