package group

import (
	"errors"
	"testing"
)

var (
	errStale      = errors.New("stale")
	errUnexpected = errors.New("unexpected")
	testErrs      = Errors{StaleEpoch: errStale, Unexpected: errUnexpected}
)

// TestTimerFiresAfterLimit checks that a timer fires on the limit-th
// waiting tick in a row, starts again after firing, and that a tick that
// is not waiting, or a Reset, starts the count again.
func TestTimerFiresAfterLimit(t *testing.T) {
	var tm Timer
	var fired []int
	waiting := []bool{true, true, false, true, true, true, true, true, true}
	for i, w := range waiting {
		if i == 7 {
			tm.Reset()
		}
		if tm.Tick(w, 3) {
			fired = append(fired, i)
		}
	}
	if len(fired) != 1 || fired[0] != 5 {
		t.Fatalf("fired at ticks %v, want [5]", fired)
	}
}

// TestHoldKeepsLowestUntilAcked checks that a hold keeps the lowest seq
// asked for, bounds trimming until the acks reach it, and then ends.
func TestHoldKeepsLowestUntilAcked(t *testing.T) {
	var h Hold
	if got := h.Limit(10, 0); got != 10 {
		t.Fatalf("no hold: Limit(10, 0) = %d", got)
	}
	h.Keep(5)
	h.Keep(7)
	if got := h.Limit(10, 4); got != 5 {
		t.Fatalf("hold at 5, acked 4: Limit = %d, want 5", got)
	}
	if got := h.Limit(10, 5); got != 10 {
		t.Fatalf("hold at 5, acked 5: Limit = %d, want 10 (released)", got)
	}
	h.Keep(8)
	h.Release()
	if got := h.Limit(10, 0); got != 10 {
		t.Fatalf("released hold: Limit = %d, want 10", got)
	}
}

// TestBarrier checks a joiner made member: it waits for the first report
// from upstream, takes only that one, and is past once it applies so far.
func TestBarrier(t *testing.T) {
	var b Barrier
	b.Reconfigure(true, true)
	if b.Passed(100) {
		t.Fatal("a joiner made member is past its barrier before upstream reported")
	}
	b.Learn(7)
	b.Learn(9)
	if b.Seq != 7 || b.Passed(6) || !b.Passed(7) {
		t.Fatalf("barrier %+v after reports 7 and 9", b)
	}
	b.Reconfigure(false, false)
	if b != (Barrier{}) {
		t.Fatalf("a replica out of the members keeps barrier %+v", b)
	}
}

// TestViewSet checks the roles a configuration gives and the checks of
// a message against the view.
func TestViewSet(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want Role
	}{{"a", RolePrimary}, {"b", RoleBackup}, {"j", RoleJoining}, {"x", RoleNone}} {
		v := NewView(tc.id, testErrs)
		v.Set(3, []string{"a", "b", "c"}, "j")
		if v.Role != tc.want || v.Primary != "a" || v.Epoch != 3 {
			t.Errorf("%s: view %+v, want role %s", tc.id, v, tc.want)
		}
	}
	v := NewView("b", testErrs)
	m := Envelope{Type: RoleBackup, From: "a", To: "b", Epoch: 3}
	if err := v.Admit(m); !errors.Is(err, errStale) {
		t.Fatalf("a message before any configuration: %v, want stale", err)
	}
	v.Set(3, []string{"a", "b"}, "")
	if err := v.Admit(m); err != nil {
		t.Fatal(err)
	}
	if err := v.FromPrimary(m); err != nil {
		t.Fatal(err)
	}
	m.To = "c"
	if err := v.Admit(m); !errors.Is(err, errUnexpected) {
		t.Fatalf("a message for c delivered to b: %v, want unexpected", err)
	}
	m.From = "c"
	if err := v.FromPrimary(m); !errors.Is(err, errUnexpected) {
		t.Fatalf("a message from c as the primary: %v, want unexpected", err)
	}
}

// testPeer is a core's peer type as the generic functions see it.
type testPeer struct {
	Peer
	next uint64
}

// TestPeers checks the table a primary builds, its lookup and the output
// rule, which ignores the joiner.
func TestPeers(t *testing.T) {
	ps := NewPeers[testPeer]([]string{"a", "b", "c"}, "j")
	if len(ps) != 3 || ps[0].ID != "b" || ps[1].ID != "c" || ps[2].ID != "j" || !ps[2].Joining || ps[0].Joining {
		t.Fatalf("peers %+v", ps)
	}
	if NewPeers[testPeer]([]string{"a"}, "") != nil {
		t.Fatal("a primary alone has peers")
	}
	Find(ps, "c").Ack, Find(ps, "c").next = 4, 5
	Find(ps, "b").Ack = 6
	if p := Find(ps, "x"); p != nil || ps[1].next != 5 {
		t.Fatalf("found %+v for x, or Find did not return the table's own c: %+v", p, ps[1])
	}
	if got := CommitPoint(ps, 9); got != 4 {
		t.Fatalf("CommitPoint = %d, want 4 (the joiner's 0 does not count)", got)
	}
	if got := MinAck(ps, 9); got != 0 {
		t.Fatalf("MinAck = %d, want the joiner's 0", got)
	}
}

// TestUpTickHello checks that a replica says Hello again only while it is
// behind a silent primary, and never while it waits for a snapshot.
func TestUpTickHello(t *testing.T) {
	u := Up{Heard: true, PrimaryLast: 5}
	if u.TickHello(5, 1) {
		t.Fatal("a replica level with its primary said Hello")
	}
	if !u.TickHello(4, 1) {
		t.Fatal("a replica behind a silent primary did not say Hello")
	}
	u.AwaitSnapshot(2)
	if u.TickHello(0, 1) || u.Synced() || u.SnapLineage != 2 {
		t.Fatalf("waiting for a snapshot: %+v", u)
	}
}
