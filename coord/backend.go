package coord

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrLeaseNotFound is a Backend's answer for a lease it does not know: it
// expired or was revoked. A renewal that gets it has lost the lease for
// good.
var ErrLeaseNotFound = errors.New("lockstep: coordinator lease not found")

// Backend is the part of etcd a node's registration uses: leases, and
// one-key transactions that compare a key's existence or lease. Two
// implementations exist: EtcdBackend, and the whole-node simulation's
// coordinator (package nodesim), which runs the same Registrar under
// seeded faults. Keeping the interface this small is what makes the
// simulated one faithful.
type Backend interface {
	// Grant creates a lease of at least ttl and returns its id and the
	// TTL actually granted.
	Grant(ctx context.Context, ttl time.Duration) (id int64, granted time.Duration, err error)
	// KeepAlive renews the lease once and returns its TTL, or an error
	// wrapping ErrLeaseNotFound if the lease is gone.
	KeepAlive(ctx context.Context, id int64) (time.Duration, error)
	// Revoke ends the lease and deletes the keys attached to it; a lease
	// already gone is not an error.
	Revoke(ctx context.Context, id int64) error
	// GrantedTTL returns the TTL the lease was granted with.
	GrantedTTL(ctx context.Context, id int64) (time.Duration, error)
	// Txn runs t atomically.
	Txn(ctx context.Context, t Txn) (TxnResult, error)
}

// Txn is a transaction: if every comparison in If holds, Then runs, else
// Else runs.
type Txn struct {
	If   []Cmp
	Then []Op
	Else []Op
}

// Cmp compares one key. With Absent it holds when the key does not exist;
// otherwise it holds when the key exists and is attached to Lease.
type Cmp struct {
	Key    string
	Absent bool
	Lease  int64
}

// Op is a put of Value attached to Lease (0: none), or, with Get, a read.
type Op struct {
	Key   string
	Value []byte
	Lease int64
	Get   bool
}

// Record is a key as a read returns it.
type Record struct {
	Value          []byte
	Lease          int64
	CreateRevision int64
}

// TxnResult is what a transaction did. Got holds, for each op that ran,
// the record a Get read (nil for a put or a missing key).
type TxnResult struct {
	Succeeded bool
	Revision  int64
	Got       []*Record
}

// CmpAbsent holds when key does not exist.
func CmpAbsent(key string) Cmp { return Cmp{Key: key, Absent: true} }

// CmpLease holds when key exists and is attached to lease.
func CmpLease(key string, lease int64) Cmp { return Cmp{Key: key, Lease: lease} }

// EtcdBackend is the Backend on an etcd client.
type EtcdBackend struct{ Cli *clientv3.Client }

var _ Backend = EtcdBackend{}

// Grant implements Backend.
func (b EtcdBackend) Grant(ctx context.Context, ttl time.Duration) (int64, time.Duration, error) {
	secs := int64((ttl + time.Second - 1) / time.Second)
	resp, err := b.Cli.Grant(ctx, secs)
	if err != nil {
		return 0, 0, err
	}
	return int64(resp.ID), time.Duration(resp.TTL) * time.Second, nil
}

// KeepAlive implements Backend.
func (b EtcdBackend) KeepAlive(ctx context.Context, id int64) (time.Duration, error) {
	resp, err := b.Cli.KeepAliveOnce(ctx, clientv3.LeaseID(id))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return 0, fmt.Errorf("%w: %v", ErrLeaseNotFound, err)
	}
	if err != nil {
		return 0, err
	}
	return time.Duration(resp.TTL) * time.Second, nil
}

// Revoke implements Backend.
func (b EtcdBackend) Revoke(ctx context.Context, id int64) error {
	if _, err := b.Cli.Revoke(ctx, clientv3.LeaseID(id)); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return err
	}
	return nil
}

// GrantedTTL implements Backend.
func (b EtcdBackend) GrantedTTL(ctx context.Context, id int64) (time.Duration, error) {
	resp, err := b.Cli.TimeToLive(ctx, clientv3.LeaseID(id))
	if err != nil {
		return 0, err
	}
	return time.Duration(resp.GrantedTTL) * time.Second, nil
}

// Txn implements Backend.
func (b EtcdBackend) Txn(ctx context.Context, t Txn) (TxnResult, error) {
	cmps := make([]clientv3.Cmp, len(t.If))
	for i, c := range t.If {
		if c.Absent {
			cmps[i] = clientv3.Compare(clientv3.CreateRevision(c.Key), "=", 0)
		} else {
			cmps[i] = clientv3.Compare(clientv3.LeaseValue(c.Key), "=", c.Lease)
		}
	}
	resp, err := b.Cli.Txn(ctx).If(cmps...).Then(etcdOps(t.Then)...).Else(etcdOps(t.Else)...).Commit()
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return TxnResult{}, fmt.Errorf("%w: %v", ErrLeaseNotFound, err) // a put attached to a lease that is gone
	}
	if err != nil {
		return TxnResult{}, err
	}
	res := TxnResult{Succeeded: resp.Succeeded, Revision: resp.Header.Revision, Got: make([]*Record, len(resp.Responses))}
	for i, r := range resp.Responses {
		if rr := r.GetResponseRange(); rr != nil && len(rr.Kvs) > 0 {
			kv := rr.Kvs[0]
			res.Got[i] = &Record{Value: kv.Value, Lease: kv.Lease, CreateRevision: kv.CreateRevision}
		}
	}
	return res, nil
}

func etcdOps(ops []Op) []clientv3.Op {
	out := make([]clientv3.Op, len(ops))
	for i, o := range ops {
		switch {
		case o.Get:
			out[i] = clientv3.OpGet(o.Key)
		case o.Lease != 0:
			out[i] = clientv3.OpPut(o.Key, string(o.Value), clientv3.WithLease(clientv3.LeaseID(o.Lease)))
		default:
			out[i] = clientv3.OpPut(o.Key, string(o.Value))
		}
	}
	return out
}
