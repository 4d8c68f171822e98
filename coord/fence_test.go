package coord

import (
	"errors"
	"testing"
	"time"
)

// TestFenceRevokesOnlyTheNamedProcess checks that Fence leaves a newer
// process of the same name alone (pid mismatch), and that with the right
// pid it removes the registration at once (checked right after the call,
// long before the lease could expire), and ends the fenced session with
// ErrLeaseLost at its next renewal.
func TestFenceRevokesOnlyTheNamedProcess(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	cli := dial(t, e)
	cluster := clusterName(t)
	s := newTestSession(t, cli, cluster, "a", 3*time.Second) // registered with pid 42
	newTestSession(t, cli, cluster, "b", 30*time.Second)

	if fenced, err := Fence(testCtx(t), cli, cluster, "a", 43); err != nil || fenced {
		t.Fatalf("Fence(pid 43) = %v, %v; want nothing fenced", fenced, err)
	}
	if _, ok := nodeNames(t, cli, cluster)["a"]; !ok {
		t.Fatal("a wrong pid removed the registration")
	}
	if fenced, err := Fence(testCtx(t), cli, cluster, "a", 42); err != nil || !fenced {
		t.Fatalf("Fence(pid 42) = %v, %v; want fenced", fenced, err)
	}
	nodes := nodeNames(t, cli, cluster)
	if _, ok := nodes["a"]; ok {
		t.Fatal("a fenced node is still registered")
	}
	if _, ok := nodes["b"]; !ok {
		t.Fatal("fencing a removed b too")
	}
	eventually(t, 10*time.Second, "the fenced session to end", func() bool {
		select {
		case <-s.Done():
			return errors.Is(s.Err(), ErrLeaseLost)
		default:
			return false
		}
	})
	if fenced, err := Fence(testCtx(t), cli, cluster, "a", 0); err != nil || fenced {
		t.Fatalf("second Fence = %v, %v; want nothing left to fence", fenced, err)
	}
	if _, err := Fence(testCtx(t), cli, cluster, "no/such", 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Fence of a bad name: %v, want ErrInvalid", err)
	}
}
