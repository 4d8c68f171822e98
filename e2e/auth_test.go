package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestPasswordThroughEveryNode: a group whose nodes share a password
// (from --requirepass-file, so it is not in argv) serves an authenticated
// client through every node, writes and reads alike, whichever node
// orders writes or answers reads: a node forwards its client's commands
// authenticated as the group. A client without the password is refused
// at every node.
func TestPasswordThroughEveryNode(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startClusterArgs(t, 3, chainProto, func(string) []string { return []string{"--requirepass-file", pwFile} })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addrs := c.addrsOf("n1", "n2", "n3")
	for i, addr := range addrs {
		rc := redis.NewClient(&redis.Options{Addr: addr, Password: "s3cret", MaxRetries: -1})
		key := "k" + nodeName(i+1)
		if err := rc.Set(ctx, key, addr, 0).Err(); err != nil {
			t.Fatalf("SET through %s with the password: %v", nodeName(i+1), err)
		}
		for j, other := range addrs {
			oc := redis.NewClient(&redis.Options{Addr: other, Password: "s3cret", MaxRetries: -1})
			if got, err := oc.Get(ctx, key).Result(); err != nil || got != addr {
				t.Fatalf("GET %s through %s = %q, %v; want %q", key, nodeName(j+1), got, err, addr)
			}
			_ = oc.Close()
		}
		_ = rc.Close()
		anon := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		if err := anon.Get(ctx, key).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
			t.Fatalf("GET through %s without the password: %v, want NOAUTH", nodeName(i+1), err)
		}
		_ = anon.Close()
	}
}
