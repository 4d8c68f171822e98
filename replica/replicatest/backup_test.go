package replicatest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockstep/lockstep/backup"
	"github.com/lockstep/lockstep/internal/cutcheck"
)

// TestBackupIsOneCut takes a backup, through a replica that does not
// answer reads (so the stream is relayed), while writers keep writing
// through every replica; the backup must be one cut of every writer's
// history holding every write acknowledged before it began. The backup
// is then restored into a second group, whose data digest must be the
// backup's.
func TestBackupIsOneCut(t *testing.T) {
	for _, protocol := range protocols {
		t.Run(protocol, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 9*time.Second)
			defer cancel()
			c := startGroup(t, ctx, protocol)
			writers, stop := startCutWriters(ctx, c, 4)
			defer stop()
			waitAcked(t, ctx, writers, 30)
			lo := acked(writers)
			out := filepath.Join(t.TempDir(), "b.lsbackup")
			res, err := backup.Take(ctx, backup.TakeOptions{Addr: c.Node("r2").Addr, Out: out})
			hi := started(writers)
			waitAcked(t, ctx, writers, 10) // writes go on after the backup
			stop()
			if err != nil {
				t.Fatal(err)
			}
			data := readBackup(t, out)
			for i, w := range writers {
				if _, err := w.Check(data, lo[i], hi[i]); err != nil {
					t.Fatalf("backup at seq %d: %v", res.Header.Seq, err)
				}
			}
			if res.Header.Protocol != protocol || res.Header.Keys != uint64(len(data)) {
				t.Fatalf("header %+v for %d keys", res.Header, len(data))
			}
			restoreInto(t, ctx, startGroup(t, ctx, protocol), out, res.Header)
		})
	}
}

// startCutWriters runs n cutcheck writers, writer i through replica
// i%3, until stop is called; stop waits for them.
func startCutWriters(ctx context.Context, c *Cluster, n int) (ws []*cutcheck.Writer, stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	ws = make([]*cutcheck.Writer, n)
	var wg sync.WaitGroup
	for i := range ws {
		ws[i] = cutcheck.NewWriter(i, 7)
		node := c.Nodes()[i%len(c.Nodes())]
		wg.Go(func() {
			ws[i].Run(ctx, func(ctx context.Context, key, value string) error {
				v, err := node.Write(ctx, "SET", key, value)
				if err == nil && v.Type == '-' {
					err = errors.New(string(v.Str))
				}
				return err
			})
		})
	}
	return ws, func() {
		cancel()
		wg.Wait()
	}
}

func waitAcked(t *testing.T, ctx context.Context, ws []*cutcheck.Writer, more int64) {
	t.Helper()
	from := acked(ws)
	err := WaitFor(ctx, "writers to make progress", func() bool {
		for i, w := range ws {
			if w.Acked() < from[i]+more {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
}

func acked(ws []*cutcheck.Writer) []int64 {
	out := make([]int64, len(ws))
	for i, w := range ws {
		out[i] = w.Acked()
	}
	return out
}

func started(ws []*cutcheck.Writer) []int64 {
	out := make([]int64, len(ws))
	for i, w := range ws {
		out[i] = w.Started()
	}
	return out
}

// readBackup returns the records of a backup file, which must check.
func readBackup(t *testing.T, path string) map[string]string {
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

// restoreInto restores the backup at path into the empty group c through
// a replica that forwards writes, and checks that c's data digest is the
// backup's.
func restoreInto(t *testing.T, ctx context.Context, c *Cluster, path string, h backup.Header) {
	t.Helper()
	res, err := backup.Restore(ctx, backup.RestoreOptions{In: path, Addr: c.Node("r2").Addr})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Recorded || res.Loaded != int64(h.Keys) || res.Digest != backup.FormatDigest(h.Digest) {
		t.Fatalf("restore: %+v, backup header %+v", res, h)
	}
	v, err := c.Node("r3").Do(ctx, "LOCKSTEP.DATADIGEST")
	if err != nil || v.Type != '$' {
		t.Fatalf("data digest of the restored group: %s", show(v, err))
	}
	if _, keys, d, err := backup.ParseDataDigest(string(v.Str)); err != nil || d != res.Digest || keys != int64(h.Keys) {
		t.Fatalf("restored group: %s, backup: %d keys, %s", v.Str, h.Keys, res.Digest)
	}
	_, err = backup.Restore(ctx, backup.RestoreOptions{In: path, Addr: c.Node("r1").Addr})
	if !errors.Is(err, backup.ErrNotEmpty) {
		t.Fatalf("a second restore into the same group: %v, want ErrNotEmpty", err)
	}
}

// TestBackupWaitsForCommit: where the replica that answers reads applies
// writes before they commit (a primary, and a checkpoint primary that
// executes speculatively), a backup of a state holding an uncommitted
// write must not leave until that write commits. The primary is cut off
// from its backups with a write in flight: no stream may start; once the
// links heal, the backup holds the write.
func TestBackupWaitsForCommit(t *testing.T) {
	for _, protocol := range protocols[1:] {
		t.Run(protocol, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 9*time.Second)
			defer cancel()
			c := startGroup(t, ctx, protocol)
			primary := c.Node("r1")
			expect(t, "first write", "+OK")(primary.Write(ctx, "SET", "k", "committed"))
			c.Net.Cut("r1", "r2")
			c.Net.Cut("r1", "r3")
			applied := primary.Replica.Status().Applied
			inflight := make(chan string, 1)
			go func() { inflight <- show(primary.Write(ctx, "SET", "k", "inflight")) }()
			if err := WaitFor(ctx, "the write applied at the primary", func() bool { return primary.Replica.Status().Applied > applied }); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "b.lsbackup")
			pctx, pcancel := context.WithTimeout(ctx, 300*time.Millisecond)
			_, err := backup.Take(pctx, backup.TakeOptions{Addr: primary.Addr, Out: out})
			pcancel()
			if err == nil {
				t.Fatalf("a backup left before its state committed: %v", readBackup(t, out))
			}
			c.Net.Heal("r1", "r2")
			c.Net.Heal("r1", "r3")
			if _, err := backup.Take(ctx, backup.TakeOptions{Addr: primary.Addr, Out: out}); err != nil {
				t.Fatal(err)
			}
			if got := readBackup(t, out)["k"]; got != "inflight" {
				t.Fatalf("backup after the heal holds k=%q, want the write that was in flight", got)
			}
			if got := <-inflight; got != "+OK" {
				t.Fatalf("the write in flight: %s", got)
			}
		})
	}
}

// TestBackupHereIsNotRelayed: a request marked HERE is answered by the
// replica it reaches or refused, never relayed again.
func TestBackupHereIsNotRelayed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := startGroup(t, ctx, protocols[0])
	v, err := c.Node("r1").Do(ctx, "LOCKSTEP.BACKUP", "HERE")
	if err != nil || v.Type != '-' || !strings.HasPrefix(string(v.Str), "TRYAGAIN") {
		t.Fatalf("LOCKSTEP.BACKUP HERE at the head: %s", show(v, err))
	}
	v, err = c.Node("r3").Do(ctx, "LOCKSTEP.BACKUP", "HERE")
	if err != nil || v.Type != '*' || len(v.Array) == 0 || string(v.Array[0].Str) != "backup" {
		t.Fatalf("LOCKSTEP.BACKUP HERE at the tail: %s", show(v, err))
	}
}

// TestRestoreExpiry restores a backup whose keys expire at different
// times: one expired already is skipped and counted, the others keep
// their absolute expiry, and the verification leaves out the one that
// expires within its margin.
func TestRestoreExpiry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := startGroup(t, ctx, protocols[0])
	now := time.Now().UnixMilli()
	far := now + time.Hour.Milliseconds()
	path := filepath.Join(t.TempDir(), "b.lsbackup")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := backup.NewWriter(f, backup.Header{Seq: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []backup.Record{
		{Key: []byte("expired"), Value: []byte("x"), ExpireAt: now - 1000},
		{Key: []byte("far"), Value: []byte("y"), ExpireAt: far},
		{Key: []byte("forever"), Value: []byte("z")},
		{Key: []byte("soon"), Value: []byte("s"), ExpireAt: now + 2000},
	} {
		if err := w.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := backup.Restore(ctx, backup.RestoreOptions{In: path, Addr: c.Node("r1").Addr})
	if err != nil {
		t.Fatal(err)
	}
	if res.Loaded != 3 || res.Expired != 1 || res.Recorded || res.Compared != 2 {
		t.Fatalf("restore: loaded %d, expired %d, compared %d (recorded digest: %v); want 3, 1, 2, false",
			res.Loaded, res.Expired, res.Compared, res.Recorded)
	}
	v, err := c.Node("r3").Read(ctx, "PTTL", "far")
	if ttl := far - time.Now().UnixMilli(); err != nil || v.Int > ttl+1000 || v.Int < ttl-1000 {
		t.Fatalf("PTTL far: %s, want about %d", show(v, err), ttl)
	}
	expect(t, "the expired key", "(nil)")(c.Node("r3").Read(ctx, "GET", "expired"))
}
