package coord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Fence ends at once the registration of a node process that is known to
// be dead, instead of leaving it to its lease's expiry: it revokes the lease
// behind nodes/<name>, which deletes the node's keys (its registration and
// its election candidacy), so the reconfiguration leader removes it from
// its group within milliseconds rather than about one TTL later.
//
// Only a caller that has proof of death may call it: a supervisor whose
// wait for the process returned, say. The lease is what keeps a live but
// unreachable node from serving once its group has moved on; revoking the
// lease of a process that is still running would let it answer reads
// from a stale state until it notices. pid guards against fencing a newer
// process of the same name: when pid is not 0 and the registration names
// another pid, nothing is revoked.
//
// Fence reports whether it revoked a lease; a name with no registration,
// or whose lease is already gone, is not an error.
func Fence(ctx context.Context, cli *clientv3.Client, cluster, name string, pid int) (bool, error) {
	if err := validName("node name", name); err != nil {
		return false, err
	}
	resp, err := cli.Get(ctx, nodeKey(cluster, name))
	if err != nil {
		return false, fmt.Errorf("coord: fence %s: %w", name, err)
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].Lease == 0 {
		return false, nil
	}
	kv := resp.Kvs[0]
	var info NodeInfo
	if err := json.Unmarshal(kv.Value, &info); err != nil {
		return false, fmt.Errorf("coord: fence %s: %w", name, err)
	}
	if pid != 0 && info.Pid != pid {
		return false, nil
	}
	if _, err := cli.Revoke(ctx, clientv3.LeaseID(kv.Lease)); err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return false, nil
		}
		return false, fmt.Errorf("coord: fence %s: revoke lease: %w", name, err)
	}
	return true, nil
}
