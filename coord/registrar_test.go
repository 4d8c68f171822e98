package coord

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// fakeBackend is a one-lease Backend whose answers a test sets.
type fakeBackend struct {
	ttl     time.Duration
	txnErr  error
	held    *Record // the record Register finds, if any
	renewed int
}

func (f *fakeBackend) Grant(context.Context, time.Duration) (int64, time.Duration, error) {
	return 7, f.ttl, nil
}

func (f *fakeBackend) KeepAlive(context.Context, int64) (time.Duration, error) {
	f.renewed++
	return f.ttl, nil
}

func (f *fakeBackend) Revoke(context.Context, int64) error { return nil }

func (f *fakeBackend) GrantedTTL(context.Context, int64) (time.Duration, error) { return f.ttl, nil }

func (f *fakeBackend) Txn(_ context.Context, t Txn) (TxnResult, error) {
	if f.txnErr != nil {
		return TxnResult{}, f.txnErr
	}
	if f.held != nil && len(t.If) == 1 && t.If[0].Absent {
		return TxnResult{Revision: 9, Got: []*Record{f.held}}, nil
	}
	return TxnResult{Succeeded: true, Revision: 10}, nil
}

func newTestRegistrar(t *testing.T, b Backend, now func() time.Time) *Registrar {
	t.Helper()
	r, err := NewRegistrar(context.Background(), b, SessionConfig{
		Cluster: "c", Group: "g", Node: NodeInfo{Name: "n1"}, TTL: 2 * time.Second, Now: now,
	})
	if err != nil {
		t.Fatalf("NewRegistrar: %v", err)
	}
	return r
}

func TestRegistrarHeldNameIsNotTaken(t *testing.T) {
	b := &fakeBackend{ttl: 2 * time.Second, held: &Record{Lease: 3, Value: []byte(`{"incarnation":"other","pid":42}`)}}
	r := newTestRegistrar(t, b, time.Now)
	rev, h, err := r.Register(context.Background())
	if err != nil || rev != 0 || h == nil {
		t.Fatalf("Register of a held name = %d, %+v, %v; want the holder", rev, h, err)
	}
	if h.Lease != 3 || h.Info.Incarnation != "other" || h.Revision != 9 {
		t.Fatalf("holder = %+v, want lease 3, incarnation other, revision 9", h)
	}
	if r.Err() != nil {
		t.Fatalf("a held name ended the registration: %v", r.Err())
	}
	if err := r.NameInUse(h, time.Second); !errors.Is(err, ErrNameInUse) {
		t.Fatalf("NameInUse = %v, want ErrNameInUse", err)
	}
}

// A process that waited for a name so long that its own lease expired
// (cut off from the coordinator meanwhile) must start over as a new
// incarnation: its registration attempt fails for the lease, and the
// registration ends instead of retrying with a dead lease forever.
func TestRegistrarLeaseGoneWhileWaiting(t *testing.T) {
	b := &fakeBackend{ttl: 2 * time.Second, txnErr: fmt.Errorf("%w: requested lease not found", ErrLeaseNotFound)}
	r := newTestRegistrar(t, b, time.Now)
	if _, _, err := r.Register(context.Background()); err == nil {
		t.Fatal("Register with a lease that is gone succeeded")
	}
	if !errors.Is(r.Err(), ErrLeaseLost) {
		t.Fatalf("Err = %v, want ErrLeaseLost", r.Err())
	}
	select {
	case <-r.Done():
	default:
		t.Fatal("Done not closed")
	}
}

func TestRegistrarObserveAndRenew(t *testing.T) {
	now := time.Unix(1000, 0)
	b := &fakeBackend{ttl: 2 * time.Second}
	r := newTestRegistrar(t, b, func() time.Time { return now })
	if want := now.Add(2*time.Second - FencingMargin(2*time.Second)); !r.ValidUntil().Equal(want) {
		t.Fatalf("ValidUntil after grant = %v, want %v", r.ValidUntil(), want)
	}
	now = now.Add(time.Second)
	if err := r.Renew(context.Background()); err != nil || b.renewed != 1 {
		t.Fatalf("Renew = %v (renewals %d)", err, b.renewed)
	}
	if want := now.Add(2*time.Second - FencingMargin(2*time.Second)); !r.ValidUntil().Equal(want) {
		t.Fatalf("ValidUntil after renewal = %v, want %v", r.ValidUntil(), want)
	}
	if !r.Valid() || r.Observe(&Record{Lease: r.Lease()}) {
		t.Fatal("own registration observed as lost")
	}
	if !r.Observe(&Record{Lease: r.Lease() + 1}) || r.Valid() || !errors.Is(r.Err(), ErrLeaseLost) {
		t.Fatalf("registration under another lease not lost: valid %v, err %v", r.Valid(), r.Err())
	}
}
