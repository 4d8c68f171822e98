package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockstep/lockstep/internal/proctest"
)

// migrateKeys is how many string keys TestMigrateFromRedis copies.
const migrateKeys = 100_000

// migrateTTLSlack is how far a copied key's PTTL may be from the source's:
// the two are read a moment apart, and the copy's deadline is counted from
// when migrate sent its read.
const migrateTTLSlack = 2 * time.Second

// TestMigrateFromRedis copies 100,000 string keys, two in three with a TTL
// between a minute and an hour, from a real redis-server (password, db 2)
// into a lockstep server with the real `lockstep migrate`. Keys of other
// types make it exit non-zero, naming them, unless --skip-unsupported is
// given; then every value and TTL must match, and keys without a TTL must
// have none. A key changed in lockstep is a conflict, left alone until
// --replace.
func TestMigrateFromRedis(t *testing.T) {
	const password = "migrate s3cret"
	rs := proctest.StartRedis(t, "--requirepass", password)
	ls := proctest.StartLockstep(t, lockstepBin, "--listen", "127.0.0.1:0", "--storage", "memory")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	src := redis.NewClient(&redis.Options{Addr: rs.Addr, Password: password, DB: 2})
	defer src.Close()
	dst := redis.NewClient(&redis.Options{Addr: ls.Addr})
	defer dst.Close()
	keys := loadMigrateSource(t, ctx, src, migrateKeys)
	env := []string{"LOCKSTEP_MIGRATE_FROM_PASSWORD=" + password}
	args := []string{"--from", rs.Addr, "--from-db", "2", "--to", ls.Addr}

	out, err := runLockstepMigrate(ctx, env, args...)
	if err == nil {
		t.Fatalf("migrate without --skip-unsupported succeeded with a hash and a list left behind:\n%s", out)
	}
	for _, want := range []string{"migrate incomplete", "4 unsupported (hash 1, list 1, set 1, zset 1)",
		"h:profile (hash)", "l:queue (list)", "--skip-unsupported"} {
		if !strings.Contains(out, want) {
			t.Errorf("migrate output lacks %q:\n%s", want, out)
		}
	}

	if err := dst.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	out, err = runLockstepMigrate(ctx, env, append(args, "--skip-unsupported")...)
	if err != nil {
		t.Fatalf("migrate --skip-unsupported: %v\n%s", err, out)
	}
	if !strings.Contains(out, "migrate complete in") || !strings.Contains(out, fmt.Sprintf("%d copied", migrateKeys)) {
		t.Errorf("migrate --skip-unsupported output lacks \"migrate complete\" and %d copied:\n%s", migrateKeys, out)
	}
	t.Logf("migrate output:\n%s", out)
	checkMigrated(t, ctx, src, dst, keys)
	if n := dst.DBSize(ctx).Val(); n != migrateKeys {
		t.Errorf("lockstep holds %d keys, want %d", n, migrateKeys)
	}
	testMigrateConflict(t, ctx, src, dst, password, args)
}

// TestMigrateIntoChain migrates into a 3-node chain through its tail, which
// forwards every write to the head: any node can be --to. The chain then
// holds every value and TTL, and its replicas are byte-identical.
func TestMigrateIntoChain(t *testing.T) {
	rs := proctest.StartRedis(t)
	c := startCluster(t, 3)
	st := c.status()
	tail := c.procs[st.byRole("tail")]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer src.Close()
	keys := loadMigrateSource(t, ctx, src, 5000)
	out, err := runLockstepMigrate(ctx, nil, "--from", rs.Addr, "--to", tail.Addr, "--skip-unsupported", "--batch", "200")
	if err != nil || !strings.Contains(out, "5000 copied") {
		t.Fatalf("migrate into the tail: %v\n%s", err, out)
	}
	dst := redis.NewClient(&redis.Options{Addr: tail.Addr})
	defer dst.Close()
	checkMigrated(t, ctx, src, dst, keys)
	var digests []string
	proctest.Eventually(t, 10*time.Second, "every replica to hold the same state", func() bool {
		digests = digests[:0]
		for _, p := range c.procs {
			digests = append(digests, replicaDigest(t, ctx, p.Addr))
		}
		return digests[0] == digests[1] && digests[1] == digests[2]
	})
}

// replicaDigest asks the node at addr for its own applied sequence number
// and the hash of its whole state.
func replicaDigest(t *testing.T, ctx context.Context, addr string) string {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	d, err := rc.Do(ctx, "lockstep.digest").Text()
	if err != nil {
		t.Fatalf("lockstep.digest at %s: %v", addr, err)
	}
	return d
}

// testMigrateConflict changes one key in lockstep and migrates a few keys
// again, with the password from a file this time: the changed key is a
// conflict and stays changed, until --replace copies the source's value
// and TTL over it.
func testMigrateConflict(t *testing.T, ctx context.Context, src, dst *redis.Client, password string, args []string) {
	t.Helper()
	pwFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const changed = "str:000007"
	if err := dst.Set(ctx, changed, "changed in lockstep", 0).Err(); err != nil {
		t.Fatal(err)
	}
	args = append(args, "--from-password-file", pwFile, "--match", "str:00000*", "--skip-unsupported")
	out, err := runLockstepMigrate(ctx, nil, args...)
	if err == nil || !strings.Contains(out, "9 already present, 1 conflicts") || !strings.Contains(out, changed) {
		t.Fatalf("migrate over a changed key: err %v, want a conflict naming %s:\n%s", err, changed, out)
	}
	if v := dst.Get(ctx, changed).Val(); v != "changed in lockstep" {
		t.Fatalf("a conflicting key was overwritten without --replace: %q", v)
	}
	out, err = runLockstepMigrate(ctx, nil, append(args, "--replace")...)
	if err != nil || !strings.Contains(out, "10 copied") {
		t.Fatalf("migrate --replace: %v\n%s", err, out)
	}
	checkMigrated(t, ctx, src, dst, []string{changed})
}

// runLockstepMigrate runs `lockstep migrate args...` with env added to
// this process's environment, and returns its stdout and stderr.
func runLockstepMigrate(ctx context.Context, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, lockstepBin, append([]string{"migrate"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return string(out), fmt.Errorf("not run: %w", err) // never a migration failure
	}
	return string(out), err
}

// loadMigrateSource fills the source with n string keys and one key each
// of four other types, and returns the string keys' names. Values
// include an empty one and binary ones; TTLs are spread over a minute to
// an hour, and every third key has none.
func loadMigrateSource(t *testing.T, ctx context.Context, src *redis.Client, n int) []string {
	t.Helper()
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("str:%06d", i)
	}
	for start := 0; start < len(keys); start += 1000 {
		_, err := src.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := start; i < min(start+1000, len(keys)); i++ {
				ttl := time.Duration(0)
				if i%3 != 0 {
					ttl = time.Minute + time.Duration(i*7919%3_540_000)*time.Millisecond
				}
				p.Set(ctx, keys[i], migrateValue(i), ttl)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := src.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, "h:profile", "name", "ada", "lang", "go")
		p.RPush(ctx, "l:queue", "a", "b", "c")
		p.SAdd(ctx, "s:tags", "x", "y")
		p.ZAdd(ctx, "z:rank", redis.Z{Score: 1, Member: "m"})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// migrateValue is the value of the i-th source key.
func migrateValue(i int) string {
	switch {
	case i == 1:
		return ""
	case i%10_000 == 0:
		return fmt.Sprintf("bin\x00\r\n\xff%d", i)
	}
	return fmt.Sprintf("value-%d", i)
}

// checkMigrated compares every key's value and PTTL in lockstep with the
// source's, a thousand keys per pipeline.
func checkMigrated(t *testing.T, ctx context.Context, src, dst *redis.Client, keys []string) {
	t.Helper()
	bad := 0
	for chunk := range slices.Chunk(keys, 1000) {
		want, got := readValues(t, ctx, src, chunk), readValues(t, ctx, dst, chunk)
		for i, k := range chunk {
			w, g := want[i], got[i]
			ttlOK := (w.pttl == -1 && g.pttl == -1) ||
				(w.pttl >= 0 && g.pttl >= 0 && (w.pttl-g.pttl).Abs() <= migrateTTLSlack)
			if (g.value != w.value || !g.found || !ttlOK) && bad < 10 {
				t.Errorf("%s: lockstep has %q (found %v) PTTL %v, source %q PTTL %v", k, g.value, g.found, g.pttl, w.value, w.pttl)
				bad++
			}
		}
	}
	if bad > 0 {
		t.FailNow()
	}
}

type storedValue struct {
	value string
	found bool
	pttl  time.Duration // -1: no TTL
}

// readValues reads GET and PTTL of keys from c in one pipeline.
func readValues(t *testing.T, ctx context.Context, c *redis.Client, keys []string) []storedValue {
	t.Helper()
	gets := make([]*redis.StringCmd, len(keys))
	pttls := make([]*redis.Cmd, len(keys))
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			gets[i], pttls[i] = p.Get(ctx, k), p.Do(ctx, "pttl", k)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	out := make([]storedValue, len(keys))
	for i := range keys {
		v, err := gets[i].Result()
		ms, perr := pttls[i].Int64()
		if (err != nil && !errors.Is(err, redis.Nil)) || perr != nil {
			t.Fatalf("%s: GET %v, PTTL %v", keys[i], err, perr)
		}
		out[i] = storedValue{value: v, found: err == nil, pttl: time.Duration(ms) * time.Millisecond}
		if ms < 0 {
			out[i].pttl = time.Duration(ms)
		}
	}
	return out
}
