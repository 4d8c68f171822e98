package replica

import (
	"errors"
	"fmt"
	"testing"
)

func TestEpochRefusal(t *testing.T) {
	stale := errors.New("stale epoch")
	other := errors.New("unexpected")
	epoch := func() uint64 { return 5 }
	for _, tc := range []struct {
		err      error
		msgEpoch uint64
		want     error
	}{
		{nil, 9, nil},
		{other, 9, other},
		{fmt.Errorf("%w: from n2", stale), 6, errFutureEpoch},
		{fmt.Errorf("%w: from n2", stale), 4, nil},
	} {
		if got := epochRefusal(tc.err, stale, tc.msgEpoch, epoch); !errors.Is(got, tc.want) || (tc.want == nil) != (got == nil) {
			t.Errorf("epochRefusal(%v, epoch %d) = %v, want %v", tc.err, tc.msgEpoch, got, tc.want)
		}
	}
}

// TestEarlyMessagesBounded: kept messages come back in arrival order, as
// copies, and the oldest go first past the count and byte bounds.
func TestEarlyMessagesBounded(t *testing.T) {
	var e earlyMessages
	buf := []byte("a")
	e.keep(buf)
	buf[0] = 'b' // the transport reuses its buffer
	e.keep([]byte("c"))
	if got := e.take(); len(got) != 2 || string(got[0]) != "a" || string(got[1]) != "c" {
		t.Fatalf("take = %q, want [a c]", got)
	}
	if got := e.take(); len(got) != 0 {
		t.Fatalf("second take = %q, want nothing", got)
	}
	for i := range earlyMaxMsgs + 10 {
		e.keep([]byte{byte(i)})
	}
	got := e.take()
	if len(got) != earlyMaxMsgs || got[0][0] != 10 {
		t.Fatalf("kept %d messages starting at %d, want the last %d", len(got), got[0][0], earlyMaxMsgs)
	}
	big := make([]byte, earlyMaxBytes/2+1)
	e.keep(big)
	e.keep(big)
	e.keep([]byte("z"))
	if got := e.take(); len(got) != 2 || string(got[1]) != "z" {
		t.Fatalf("past the byte bound kept %d messages, want the newest big one and z", len(got))
	}
}
