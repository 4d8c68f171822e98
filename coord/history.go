package coord

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// historyKeep is how many configurations a group's history keeps: each
// write deletes the entry this many epochs older, so it stays bounded.
const historyKeep = 1000

// Change is one entry of a group's history: a configuration written, when,
// why, and the one it replaced (nil for the first).
type Change struct {
	Epoch  uint64    `json:"epoch"`
	Time   time.Time `json:"time"`
	Reason string    `json:"reason"`
	Prev   *Config   `json:"prev,omitempty"`
	Next   Config    `json:"next"`
}

func historyPrefix(cluster, group string) string { return groupPrefix(cluster, group) + "history/" }

// historyKey orders entries by epoch as etcd sorts keys (zero-padded).
func historyKey(cluster, group string, epoch uint64) string {
	return fmt.Sprintf("%s%020d", historyPrefix(cluster, group), epoch)
}

// historyOps are the writes that record next (replacing prev, for reason)
// in the group's history, to go in the transaction that writes next.
func historyOps(cluster, group string, prev, next Config, reason string) ([]clientv3.Op, error) {
	ch := Change{Epoch: next.Epoch, Time: time.Now().UTC(), Reason: reason, Next: next}
	if prev.Revision != 0 {
		p := prev.clone()
		p.Revision = 0
		ch.Prev = &p
	}
	b, err := json.Marshal(ch)
	if err != nil {
		return nil, fmt.Errorf("coord: encode history: %w", err)
	}
	ops := []clientv3.Op{clientv3.OpPut(historyKey(cluster, group, next.Epoch), string(b))}
	if next.Epoch > historyKeep {
		ops = append(ops, clientv3.OpDelete(historyKey(cluster, group, next.Epoch-historyKeep)))
	}
	return ops, nil
}

// History returns the group's recorded configuration changes, oldest
// first (at most the last historyKeep).
func History(ctx context.Context, cli *clientv3.Client, cluster, group string) ([]Change, error) {
	if err := validName("cluster", cluster); err != nil {
		return nil, err
	}
	if err := validName("group", group); err != nil {
		return nil, err
	}
	resp, err := cli.Get(ctx, historyPrefix(cluster, group), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("coord: read history: %w", err)
	}
	out := make([]Change, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var ch Change
		if err := json.Unmarshal(kv.Value, &ch); err != nil {
			return nil, fmt.Errorf("coord: history entry %s: %w", kv.Key, err)
		}
		out = append(out, ch)
	}
	return out, nil
}
