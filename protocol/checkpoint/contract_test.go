package checkpoint_test

import (
	"errors"
	"testing"
	"time"

	"github.com/lockstep/lockstep/protocol"
	"github.com/lockstep/lockstep/protocol/checkpoint"
)

// epochHarness is a primary whose epochs run on a clock the test moves and
// whose dirty state the test sets, as a runtime's state machine would
// report it.
type epochHarness struct {
	t     *testing.T
	core  *checkpoint.Core
	now   time.Duration
	dirty int
}

func newEpochHarness(t *testing.T, window int, members ...string) *epochHarness {
	h := &epochHarness{t: t}
	h.core = checkpoint.New(checkpoint.Options{
		ID: "a", Window: window, Interval: 10 * time.Millisecond, MaxDirty: 100,
		Clock:      func() time.Duration { return h.now },
		DirtyBytes: func() int { return h.dirty },
	}, 0)
	h.core.SetConfig(protocol.Config{Epoch: 1, Members: members})
	return h
}

// ready takes the core's effects and reports whether it asked for the
// epoch to be closed.
func (h *epochHarness) ready() (protocol.Ready, bool) {
	rd := h.core.Ready()
	return rd, rd.TakeDelta
}

// close hands the core an epoch's delta ending at store seq seq.
func (h *epochHarness) close(seq uint64, delta string) {
	h.t.Helper()
	if err := h.core.CloseEpoch(seq, []byte(delta)); err != nil {
		h.t.Fatalf("CloseEpoch(%d): %v", seq, err)
	}
}

// TestEpochsCloseOnTheClock checks that a primary asks for its epoch to be
// closed once Interval has passed on its clock and it has something to
// checkpoint: at first its own state, with an empty checkpoint one seq on
// that the runtime applies over its state; then only epochs with writes.
func TestEpochsCloseOnTheClock(t *testing.T) {
	h := newEpochHarness(t, 4, "a")
	if _, take := h.ready(); take {
		t.Fatal("asked to close an epoch before its time")
	}
	h.now = 10 * time.Millisecond
	if _, take := h.ready(); !take {
		t.Fatal("a new primary did not ask for its first checkpoint")
	}
	h.close(0, "d0")
	rd, take := h.ready()
	if take || len(rd.Apply) != 1 || rd.Apply[0].Seq != 1 || string(rd.Apply[0].Data) != "d0" {
		t.Fatalf("after the empty checkpoint: take %t, apply %+v, want the checkpoint at 1 to apply", take, rd.Apply)
	}
	h.core.Applied(1)
	h.now = 20 * time.Millisecond
	if _, take := h.ready(); take {
		t.Fatal("asked to close an epoch without writes")
	}
	if seq, err := h.core.Propose(nil); err != nil || seq != 2 {
		t.Fatalf("Propose = %d, %v, want 2", seq, err)
	}
	h.now = 29 * time.Millisecond
	if _, take := h.ready(); take {
		t.Fatal("the epoch closed before its interval was up")
	}
	h.now = 31 * time.Millisecond
	if _, take := h.ready(); !take {
		t.Fatal("an epoch with a write did not close when its interval was up")
	}
	h.close(2, "d12")
	st := h.core.Status()
	if st.Last != 2 || st.Applied != 2 || st.Epochs.Made != 2 || st.Epochs.Bytes != 5 || st.Epochs.LastBytes != 3 {
		t.Fatalf("status after two checkpoints: %+v", st)
	}
	if !st.Speculative || st.ReadGate != protocol.GateSpeculative || !st.ServesSnapshot || st.Role != protocol.RolePrimary {
		t.Fatalf("a primary's status: %+v", st)
	}
}

// TestEpochsCutEarlyAndThrottle checks the byte bound: dirty state past
// MaxDirty cuts the epoch early while the window has room; while a
// backup lags a full window, the epoch goes on (a close due on the clock
// is counted as deferred) and, past the bound, writes wait.
func TestEpochsCutEarlyAndThrottle(t *testing.T) {
	h := newEpochHarness(t, 1, "a", "b")
	h.core.Ready()
	h.now = 10 * time.Millisecond
	h.ready()
	h.close(0, "") // the first, empty checkpoint; b never acknowledges it
	h.core.Ready()
	h.core.Applied(1)
	if _, err := h.core.Propose(nil); err != nil {
		t.Fatal(err)
	}
	h.dirty = 101
	if _, take := h.ready(); take {
		t.Fatal("asked for a checkpoint the full window cannot take")
	}
	if _, err := h.core.Propose(nil); !errors.Is(err, protocol.ErrWindowFull) {
		t.Fatalf("a write past the bound with the window full: %v, want ErrWindowFull", err)
	}
	h.now = 20 * time.Millisecond
	h.ready()
	st := h.core.Status()
	if st.Epochs.Deferred != 1 || st.Epochs.DirtyBytes != 101 || st.Lag != 1 {
		t.Fatalf("a close due on the clock with the window full: %+v", st.Epochs)
	}

	h = newEpochHarness(t, 4, "a")
	h.now = 10 * time.Millisecond
	h.ready()
	h.close(0, "")
	h.core.Ready()
	h.core.Applied(1)
	h.core.Propose(nil)
	h.dirty = 101
	if _, take := h.ready(); !take {
		t.Fatal("dirty state past the bound did not cut the epoch early")
	}
}

// TestCloseEpochRefusedAwayFromOffice checks that a replica that is not a
// ready primary refuses an epoch's delta (the runtime then fails: it has
// lost the delta) and never asks for one.
func TestCloseEpochRefusedAwayFromOffice(t *testing.T) {
	h := newEpochHarness(t, 4, "b", "a")
	h.now = time.Second
	h.dirty = 1000
	if _, take := h.ready(); take {
		t.Fatal("a backup asked to close an epoch")
	}
	if err := h.core.CloseEpoch(1, nil); !errors.Is(err, protocol.ErrNotLeader) {
		t.Fatalf("CloseEpoch at a backup: %v, want ErrNotLeader", err)
	}
	if st := h.core.Status(); st.Speculative || st.ServesSnapshot || st.Role != protocol.RoleBackup {
		t.Fatalf("a backup's status: %+v", st)
	}
}
