package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/lockstep/lockstep/backup"
	"github.com/lockstep/lockstep/internal/cutcheck"
	"github.com/lockstep/lockstep/internal/proctest"
)

// TestBackupRestore runs the real binary's backup against a 3-node
// cluster under write load, through a node that does not answer reads,
// and restores it into a new cluster. The backup must be one cut of every
// writer's history that holds each write acknowledged before it started
// (internal/cutcheck); the restored cluster must hold exactly the backup
// (data digest, and every key read back), expiry times included.
func TestBackupRestore(t *testing.T) {
	for _, protocol := range []string{chainProto, pbProto, cpProto} {
		t.Run(protocol, func(t *testing.T) { testBackupRestore(t, protocol) })
	}
}

func testBackupRestore(t *testing.T, protocol string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src := startClusterWith(t, 3, protocol)
	st := src.status()
	expireAt := seed(t, ctx, st.Nodes[0].ClientAddr)
	writers, stop := startBackupWriters(ctx, st, 6)
	defer stop()
	waitWriters(t, writers, 50)
	lo := writerMarks(writers, (*cutcheck.Writer).Acked)
	out := filepath.Join(t.TempDir(), "src.lsbackup")
	line := runTool(t, ctx, "backup", "--addr", notReader(t, st), "--out", out)
	hi := writerMarks(writers, (*cutcheck.Writer).Started)
	waitWriters(t, writers, 20) // the cluster took writes throughout
	stop()
	var during int64
	for i := range lo {
		during += hi[i] - lo[i]
	}

	seq, keys, digest := parseBackupLine(t, line)
	data := readBackupFile(t, out)
	for i, w := range writers {
		if _, err := w.Check(data, lo[i], hi[i]); err != nil {
			t.Fatalf("backup at seq %d: %v", seq, err)
		}
	}
	if keys != len(data) {
		t.Fatalf("backup says %d keys, the file holds %d", keys, len(data))
	}
	t.Logf("backup at seq %d: %d keys, sha256 %s; %d writes started while it ran", seq, keys, digest, during)

	dst := startClusterWith(t, 3, protocol)
	dstSt := dst.status()
	restored := runTool(t, ctx, "restore", "--in", out, "--addr", notReader(t, dstSt))
	if !strings.Contains(restored, "verified: the target's data digest equals the backup's, "+strconv.Itoa(keys)+" keys, sha256 "+digest) {
		t.Fatalf("restore did not verify the backup's digest:\n%s", restored)
	}
	checkRestored(t, ctx, dstSt.Nodes[1].ClientAddr, data, digest, expireAt)
}

// seed writes 8 MiB of keys, so the backup streams many batches while
// the writers write, and keys with an absolute expiry an hour ahead, so
// it carries expiry times, which it returns.
func seed(t *testing.T, ctx context.Context, addr string) int64 {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer rc.Close()
	value := strings.Repeat("v", 1024)
	for i := 0; i < 8192; i += 256 {
		pairs := make([]any, 0, 512)
		for j := i; j < i+256; j++ {
			pairs = append(pairs, fmt.Sprintf("bulk:%05d", j), value)
		}
		if err := rc.MSet(ctx, pairs...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Now().Add(time.Hour).UnixMilli()
	for i := range 5 {
		if err := rc.Do(ctx, "SET", fmt.Sprint("ttl:", i), "v", "PXAT", at).Err(); err != nil {
			t.Fatal(err)
		}
	}
	return at
}

// startBackupWriters runs n cutcheck writers, each with its own client
// of one of the cluster's nodes, until stop is called; stop waits for
// them.
func startBackupWriters(ctx context.Context, st ClusterStatus, n int) (ws []*cutcheck.Writer, stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range n {
		w := cutcheck.NewWriter(i, 20)
		ws = append(ws, w)
		rc := redis.NewClient(&redis.Options{Addr: st.Nodes[i%len(st.Nodes)].ClientAddr, MaxRetries: -1, PoolSize: 1})
		wg.Go(func() {
			defer rc.Close()
			w.Run(ctx, func(ctx context.Context, key, value string) error { return rc.Set(ctx, key, value, 0).Err() })
		})
	}
	return ws, func() {
		cancel()
		wg.Wait()
	}
}

// waitWriters waits until every writer has had more writes acknowledged.
func waitWriters(t *testing.T, ws []*cutcheck.Writer, more int64) {
	t.Helper()
	from := writerMarks(ws, (*cutcheck.Writer).Acked)
	proctest.Eventually(t, 30*time.Second, "writers to make progress", func() bool {
		for i, w := range ws {
			if w.Acked() < from[i]+more {
				return false
			}
		}
		return true
	})
}

func writerMarks(ws []*cutcheck.Writer, mark func(*cutcheck.Writer) int64) []int64 {
	out := make([]int64, len(ws))
	for i, w := range ws {
		out[i] = mark(w)
	}
	return out
}

// notReader is the client address of a member that does not answer
// reads (a chain's head, a backup), so the backup is relayed and the
// restore's writes forwarded.
func notReader(t *testing.T, st ClusterStatus) string {
	t.Helper()
	for _, n := range st.Nodes {
		if n.Role == "head" || n.Role == "backup" {
			return n.ClientAddr
		}
	}
	t.Fatalf("no head or backup in %s", statusRoles(st))
	return ""
}

// runTool runs a lockstep subcommand and returns its stdout; it fails
// the test with its stderr if the command fails.
func runTool(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, lockstepBin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("lockstep %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

var backupLine = regexp.MustCompile(`seq (\d+), (\d+) keys, sha256 ([0-9a-f]{64})`)

// parseBackupLine reads the last line `lockstep backup` prints.
func parseBackupLine(t *testing.T, out string) (seq uint64, keys int, digest string) {
	t.Helper()
	m := backupLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("lockstep backup printed %q", out)
	}
	seq, _ = strconv.ParseUint(m[1], 10, 64)
	keys, _ = strconv.Atoi(m[2])
	return seq, keys, m[3]
}

// readBackupFile returns the records of a backup file, which must check.
func readBackupFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data := map[string]string{}
	if _, err := backup.ReadAll(f, func(r backup.Record) error {
		data[string(r.Key)] = string(r.Value)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return data
}

// checkRestored reads the restored cluster through addr: its data
// digest must be the backup's, every key of the backup must read back,
// and the expiring keys must keep their absolute expiry.
func checkRestored(t *testing.T, ctx context.Context, addr string, data map[string]string, digest string, expireAt int64) {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer rc.Close()
	reply, err := rc.Do(ctx, "LOCKSTEP.DATADIGEST").Text()
	if err != nil {
		t.Fatal(err)
	}
	if _, keys, d, err := backup.ParseDataDigest(reply); err != nil || d != digest || keys != int64(len(data)) {
		t.Fatalf("restored cluster: %q, want %d keys with sha256 %s", reply, len(data), digest)
	}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	vals, err := rc.MGet(ctx, keys...).Result()
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if vals[i] != data[k] {
			t.Fatalf("restored %s=%v, the backup holds %q", k, vals[i], data[k])
		}
	}
	ttl, err := rc.PTTL(ctx, "ttl:0").Result()
	if want := time.Until(time.UnixMilli(expireAt)); err != nil || ttl > want+2*time.Second || ttl < want-2*time.Second {
		t.Fatalf("restored ttl:0 expires in %v (%v), want about %v", ttl, err, want)
	}
}
