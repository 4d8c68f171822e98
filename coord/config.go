package coord

import (
	"context"
	"encoding/json"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

type mvccKV = mvccpb.KeyValue

// GetConfig reads a group's configuration, with Revision set to the key's
// mod revision. It returns ErrNoConfig if the group was never bootstrapped.
func GetConfig(ctx context.Context, cli *clientv3.Client, cluster, group string) (Config, error) {
	key, err := configKeyChecked(cluster, group)
	if err != nil {
		return Config{}, err
	}
	resp, err := cli.Get(ctx, key)
	if err != nil {
		return Config{}, fmt.Errorf("coord: get config %s: %w", group, err)
	}
	if len(resp.Kvs) == 0 {
		return Config{}, fmt.Errorf("%w: group %s", ErrNoConfig, group)
	}
	return decodeConfig(resp.Kvs[0])
}

func configKeyChecked(cluster, group string) (string, error) {
	if err := validName("cluster", cluster); err != nil {
		return "", err
	}
	if err := validName("group", group); err != nil {
		return "", err
	}
	return configKey(cluster, group), nil
}

func decodeConfig(kv *mvccKV) (Config, error) {
	var c Config
	if err := json.Unmarshal(kv.Value, &c); err != nil {
		return Config{}, fmt.Errorf("coord: decode %s: %w", kv.Key, err)
	}
	c.Revision = kv.ModRevision
	return c, nil
}

// CASConfig replaces prev with next in one etcd transaction that compares
// the key's mod revision with prev.Revision (0: the key must not exist).
// It is the only way a configuration changes. next must be a valid
// successor of prev (see checkSuccessor). It returns next with its new
// Revision, or an error wrapping ErrConflict if the configuration changed
// since prev was read.
//
// reason says why, for the group's history (see History), which records
// every configuration written, in the same transaction.
func CASConfig(ctx context.Context, cli *clientv3.Client, cluster, group string, prev, next Config, reason string) (Config, error) {
	return casConfig(ctx, cli, cluster, group, prev, next, reason)
}

// casConfig is CASConfig with extra comparisons that must also hold, which
// is how the reconfigurator makes its writes conditional on still being the
// election leader.
func casConfig(ctx context.Context, cli *clientv3.Client, cluster, group string, prev, next Config, reason string, extra ...clientv3.Cmp) (Config, error) {
	key, err := configKeyChecked(cluster, group)
	if err != nil {
		return Config{}, err
	}
	if err := checkSuccessor(prev, next); err != nil {
		return Config{}, err
	}
	next = next.clone()
	next.Revision = 0
	val, err := json.Marshal(next)
	if err != nil {
		return Config{}, fmt.Errorf("coord: encode config: %w", err)
	}
	ops, err := historyOps(cluster, group, prev, next, reason)
	if err != nil {
		return Config{}, err
	}
	cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", prev.Revision)}, extra...)
	resp, err := cli.Txn(ctx).If(cmps...).Then(append(ops, clientv3.OpPut(key, string(val)))...).Commit()
	if err != nil {
		return Config{}, fmt.Errorf("coord: write config %s epoch %d: %w", group, next.Epoch, err)
	}
	if !resp.Succeeded {
		return Config{}, fmt.Errorf("%w: group %s, expected revision %d", ErrConflict, group, prev.Revision)
	}
	next.Revision = resp.Header.Revision
	return next, nil
}

// checkSuccessor enforces the rules every stored configuration obeys: the
// epoch goes up by exactly one (1 on create), there is at least one member,
// no member appears twice, and the joiner is not already a member.
func checkSuccessor(prev, next Config) error {
	wantEpoch := prev.Epoch + 1
	if prev.Revision == 0 {
		wantEpoch = 1
	}
	if next.Epoch != wantEpoch {
		return fmt.Errorf("%w: epoch %d after %d, want %d", ErrInvalid, next.Epoch, prev.Epoch, wantEpoch)
	}
	if len(next.Members) == 0 {
		return fmt.Errorf("%w: configuration with no members", ErrInvalid)
	}
	seen := make(map[string]bool, len(next.Members))
	for _, m := range next.Members {
		if m.Name == "" || seen[m.Name] {
			return fmt.Errorf("%w: member name %q empty or repeated", ErrInvalid, m.Name)
		}
		seen[m.Name] = true
	}
	if next.Joining != nil && seen[next.Joining.Name] {
		return fmt.Errorf("%w: joiner %s is already a member", ErrInvalid, next.Joining)
	}
	return nil
}

// WatchConfig delivers a group's configuration: the current one first (if
// any), then every change, in order, until ctx ends, when the channel is
// closed. If the watch breaks (etcd compacted the revisions it needed, or
// lost its leader), it re-reads the key and resumes; configurations written
// in the gap may then be skipped, but what is delivered always has a
// strictly larger Revision (and so Epoch) than what came before. A deleted
// key is not reported. Invalid cluster or group names close the channel at
// once. The goroutine behind it blocks until each value is received, so
// read the channel until it closes.
func WatchConfig(ctx context.Context, cli *clientv3.Client, cluster, group string) <-chan Config {
	out := make(chan Config)
	key, err := configKeyChecked(cluster, group)
	if err != nil {
		close(out)
		return out
	}
	go func() {
		defer close(out)
		watchConfig(ctx, cli, key, out, 0)
	}()
	return out
}

// watchConfig runs WatchConfig's loop. last is the revision already
// delivered (0: nothing yet, so read first); tests start it in the past to
// exercise compaction recovery. It stops when ctx ends or the client closes.
func watchConfig(ctx context.Context, cli *clientv3.Client, key string, out chan<- Config, last int64) {
	for ctx.Err() == nil && cli.Ctx().Err() == nil {
		if last > 0 {
			last = followWatch(ctx, cli, key, out, last)
			if ctx.Err() != nil {
				return
			}
		}
		// First time, or the watch broke: catch up by reading.
		rev, err := readAndSend(ctx, cli, key, out, last)
		if err != nil {
			waitRetry(ctx)
			continue
		}
		last = rev
	}
}

// readAndSend reads the key and delivers it if newer than last. It returns
// the revision to resume watching after: the read's store revision, since
// nothing newer than it existed when read.
func readAndSend(ctx context.Context, cli *clientv3.Client, key string, out chan<- Config, last int64) (int64, error) {
	resp, err := cli.Get(ctx, key)
	if err != nil {
		return last, err
	}
	if len(resp.Kvs) > 0 && resp.Kvs[0].ModRevision > last {
		c, err := decodeConfig(resp.Kvs[0])
		if err != nil {
			return last, err
		}
		if !send(ctx, out, c) {
			return last, ctx.Err()
		}
	}
	return max(last, resp.Header.Revision), nil
}

// followWatch streams changes after revision last until the watch breaks or
// ctx ends, and returns the last revision delivered or seen.
func followWatch(ctx context.Context, cli *clientv3.Client, key string, out chan<- Config, last int64) int64 {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range cli.Watch(wctx, key, clientv3.WithRev(last+1)) {
		if resp.Err() != nil || resp.Canceled {
			return last
		}
		for _, ev := range resp.Events {
			if ev.Type != clientv3.EventTypePut || ev.Kv.ModRevision <= last {
				continue
			}
			c, err := decodeConfig(ev.Kv)
			if err != nil {
				continue
			}
			if !send(ctx, out, c) {
				return last
			}
			last = c.Revision
		}
	}
	return last
}

func send(ctx context.Context, out chan<- Config, c Config) bool {
	select {
	case out <- c:
		return true
	case <-ctx.Done():
		return false
	}
}

// ClusterID returns the cluster's id, or ErrNoClusterID if it was never
// created.
func ClusterID(ctx context.Context, cli *clientv3.Client, cluster string) (string, error) {
	if err := validName("cluster", cluster); err != nil {
		return "", err
	}
	resp, err := cli.Get(ctx, clusterIDKey(cluster))
	if err != nil {
		return "", fmt.Errorf("coord: get cluster id: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return "", fmt.Errorf("%w: cluster %s", ErrNoClusterID, cluster)
	}
	return string(resp.Kvs[0].Value), nil
}

// EnsureClusterID creates the cluster id if it does not exist yet and
// returns the stored one, whoever created it: of many nodes starting at
// once, the first transaction wins and everyone gets its id.
func EnsureClusterID(ctx context.Context, cli *clientv3.Client, cluster string) (string, error) {
	if err := validName("cluster", cluster); err != nil {
		return "", err
	}
	key := clusterIDKey(cluster)
	id := randomHex(16)
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, id)).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return "", fmt.Errorf("coord: create cluster id: %w", err)
	}
	if resp.Succeeded {
		return id, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return "", fmt.Errorf("coord: cluster id vanished during creation")
	}
	return string(kvs[0].Value), nil
}

// CheckClusterID returns an error wrapping ErrWrongCluster unless the
// cluster's stored id is want. A node that persists its data records the id
// and calls this on restart, so it never joins a different cluster that
// happens to reuse the name.
func CheckClusterID(ctx context.Context, cli *clientv3.Client, cluster, want string) error {
	got, err := ClusterID(ctx, cli, cluster)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("%w: cluster %s has id %s, node data has %s", ErrWrongCluster, cluster, got, want)
	}
	return nil
}
