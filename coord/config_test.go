package coord

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func members(names ...string) []Member {
	out := make([]Member, len(names))
	for i, n := range names {
		out[i] = Member{Name: n, Incarnation: "i-" + n}
	}
	return out
}

// writeEpochs creates the config if needed and then advances it to epoch
// upto, one CAS per epoch, returning the last one written.
func writeEpochs(t *testing.T, cli *clientv3.Client, cluster string, prev Config, upto uint64) Config {
	t.Helper()
	for prev.Epoch < upto {
		next := Config{Epoch: prev.Epoch + 1, Protocol: "chain", Members: members("a", "b")}
		got, err := CASConfig(testCtx(t), cli, cluster, "g", prev, next, "test")
		if err != nil {
			t.Fatalf("CASConfig epoch %d: %v", next.Epoch, err)
		}
		prev = got
	}
	return prev
}

func TestCASConfig(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	cli := dial(t, e)
	ctx, cluster := testCtx(t), clusterName(t)
	if _, err := GetConfig(ctx, cli, cluster, "g"); !errors.Is(err, ErrNoConfig) {
		t.Fatalf("GetConfig before bootstrap = %v, want ErrNoConfig", err)
	}
	first := Config{Epoch: 1, Protocol: "chain", Members: members("a", "b", "c")}
	c1, err := CASConfig(ctx, cli, cluster, "g", Config{}, first, "test")
	if err != nil || c1.Revision == 0 {
		t.Fatalf("create = %+v, %v", c1, err)
	}
	if _, err := CASConfig(ctx, cli, cluster, "g", Config{}, first, "test"); !errors.Is(err, ErrConflict) {
		t.Fatalf("second create = %v, want ErrConflict", err)
	}
	read, err := GetConfig(ctx, cli, cluster, "g")
	if err != nil || read.Revision != c1.Revision || read.Epoch != 1 || len(read.Members) != 3 {
		t.Fatalf("GetConfig = %+v, %v; want %+v", read, err, c1)
	}
	second := Config{Epoch: 2, Protocol: "chain", Members: members("a", "c")}
	c2, err := CASConfig(ctx, cli, cluster, "g", read, second, "remove dead b")
	if err != nil || c2.Revision <= c1.Revision {
		t.Fatalf("CAS epoch 2 = %+v, %v", c2, err)
	}
	// A second writer that read epoch 1 loses.
	if _, err := CASConfig(ctx, cli, cluster, "g", read, second, "test"); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale CAS = %v, want ErrConflict", err)
	}
	bad := []Config{
		{Epoch: 4, Members: members("a")}, // skips an epoch
		{Epoch: 3},                        // no members
		{Epoch: 3, Members: []Member{{Name: "a"}, {Name: "a"}}},           // repeated
		{Epoch: 3, Members: members("a"), Joining: &members("a", "x")[0]}, // joiner is a member
	}
	for _, next := range bad {
		if _, err := CASConfig(ctx, cli, cluster, "g", c2, next, "test"); !errors.Is(err, ErrInvalid) {
			t.Errorf("CAS %+v = %v, want ErrInvalid", next, err)
		}
	}
	// The history holds the two writes, not the refused ones.
	h, err := History(ctx, cli, cluster, "g")
	if err != nil || len(h) != 2 {
		t.Fatalf("History = %+v, %v; want the 2 configurations written", h, err)
	}
	if h[0].Epoch != 1 || h[0].Prev != nil || h[1].Epoch != 2 || h[1].Reason != "remove dead b" ||
		h[1].Prev == nil || len(h[1].Prev.Members) != 3 || len(h[1].Next.Members) != 2 || h[1].Time.IsZero() {
		t.Fatalf("History = %+v", h)
	}
}

// TestWatchConfigOrder checks that a watcher started before bootstrap sees
// every epoch in order, and a late watcher starts with the current one.
func TestWatchConfigOrder(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	cli := dial(t, e)
	ctx, cancel := context.WithCancel(testCtx(t))
	cluster := clusterName(t)
	ch := WatchConfig(ctx, cli, cluster, "g")
	const n = 20
	last := writeEpochs(t, cli, cluster, Config{}, n)
	for want := uint64(1); want <= n; want++ {
		c := recvConfig(t, ch)
		if c.Epoch != want || c.Revision == 0 {
			t.Fatalf("watch delivered epoch %d (rev %d), want %d", c.Epoch, c.Revision, want)
		}
	}
	late := WatchConfig(ctx, cli, cluster, "g")
	if c := recvConfig(t, late); c.Epoch != n || c.Revision != last.Revision {
		t.Fatalf("late watcher first got %+v, want epoch %d rev %d", c, n, last.Revision)
	}
	writeEpochs(t, cli, cluster, last, n+1)
	if c := recvConfig(t, late); c.Epoch != n+1 {
		t.Fatalf("late watcher then got epoch %d, want %d", c.Epoch, n+1)
	}
	cancel()
	for range ch { // must be closed when ctx ends
	}
	for range late {
	}
}

// TestWatchConfigSurvivesCompaction resumes a watch from a revision etcd
// has compacted away: the watcher must re-read and carry on.
func TestWatchConfigSurvivesCompaction(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	cli := dial(t, e)
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	cluster := clusterName(t)
	c1 := writeEpochs(t, cli, cluster, Config{}, 1)
	c3 := writeEpochs(t, cli, cluster, c1, 3)
	if _, err := cli.Compact(ctx, c3.Revision); err != nil {
		t.Fatalf("Compact: %v", err)
	}
	ch := make(chan Config)
	go func() {
		defer close(ch)
		watchConfig(ctx, cli, configKey(cluster, "g"), ch, c1.Revision)
	}()
	if c := recvConfig(t, ch); c.Epoch != 3 {
		t.Fatalf("after compaction got epoch %d, want 3 (the current one)", c.Epoch)
	}
	writeEpochs(t, cli, cluster, c3, 4)
	if c := recvConfig(t, ch); c.Epoch != 4 {
		t.Fatalf("then got epoch %d, want 4", c.Epoch)
	}
}

func recvConfig(t *testing.T, ch <-chan Config) Config {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatalf("watch channel closed early")
		}
		return c
	case <-time.After(5 * time.Second):
		t.Fatalf("no configuration delivered within 5s")
	}
	return Config{}
}

func TestClusterID(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	cli := dial(t, e)
	ctx, cluster := testCtx(t), clusterName(t)
	if _, err := ClusterID(ctx, cli, cluster); !errors.Is(err, ErrNoClusterID) {
		t.Fatalf("ClusterID before creation = %v, want ErrNoClusterID", err)
	}
	const racers = 8
	ids := make([]string, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			id, err := EnsureClusterID(ctx, cli, cluster)
			if err != nil {
				t.Errorf("EnsureClusterID: %v", err)
			}
			ids[i] = id
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] || len(id) != 32 {
			t.Fatalf("racing EnsureClusterID returned %v, want one 32-hex id", ids)
		}
	}
	if got, err := ClusterID(ctx, cli, cluster); err != nil || got != ids[0] {
		t.Fatalf("ClusterID = %q, %v; want %q", got, err, ids[0])
	}
	if err := CheckClusterID(ctx, cli, cluster, ids[0]); err != nil {
		t.Fatalf("CheckClusterID(right id) = %v", err)
	}
	if err := CheckClusterID(ctx, cli, cluster, "other"); !errors.Is(err, ErrWrongCluster) {
		t.Fatalf("CheckClusterID(wrong id) = %v, want ErrWrongCluster", err)
	}
}
