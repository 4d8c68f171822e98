package replica

import (
	"errors"
	"testing"

	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/protocol"
	"github.com/lockstep/lockstep/protocol/chain"
	"github.com/lockstep/lockstep/protocol/checkpoint"
	"github.com/lockstep/lockstep/protocol/pb"
)

// TestCoresRefuseOtherEpochs checks what Deliver relies on, for every
// protocol: a message of a newer epoch is refused with
// protocol.ErrFutureEpoch (and kept), one of an older epoch only with
// protocol.ErrStaleEpoch (and dropped).
func TestCoresRefuseOtherEpochs(t *testing.T) {
	hello := map[string]func(epoch uint64) []byte{
		ProtocolChain: func(e uint64) []byte {
			return chain.AppendMessage(nil, chain.Message{Type: chain.MsgHello, From: "n2", To: "n1", Epoch: e})
		},
		ProtocolPrimaryBackup: func(e uint64) []byte {
			return pb.AppendMessage(nil, pb.Message{Type: pb.MsgHello, From: "n2", To: "n1", Epoch: e})
		},
		ProtocolCheckpoint: func(e uint64) []byte {
			return checkpoint.AppendMessage(nil, checkpoint.Message{Type: checkpoint.MsgHello, From: "n2", To: "n1", Epoch: e})
		},
	}
	cfg := coord.Config{Epoch: 5, Members: []coord.Member{{Name: "n1", Incarnation: "a"}, {Name: "n2", Incarnation: "b"}}}
	for proto, msg := range hello {
		core, err := newCore(proto, "n1", CoreOptions{}, newTestReplica(t, "x").sm)
		if err != nil {
			t.Fatal(err)
		}
		setCoreConfig(core, cfg, "n1", "a")
		if err := core.Step(msg(6)); !errors.Is(err, protocol.ErrFutureEpoch) || !errors.Is(err, protocol.ErrStaleEpoch) {
			t.Errorf("%s: a message of epoch 6 in epoch 5: %v, want a future (and stale) epoch", proto, err)
		}
		if err := core.Step(msg(4)); !errors.Is(err, protocol.ErrStaleEpoch) || errors.Is(err, protocol.ErrFutureEpoch) {
			t.Errorf("%s: a message of epoch 4 in epoch 5: %v, want only a stale epoch", proto, err)
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

// TestOnlyCheckpointHasEpochs checks the contract's split between the
// protocols that the runtime follows without knowing which runs: only
// checkpoint replication reports epochs (and so gets an epoch ticker,
// INFO lines and metrics); the others refuse a delta.
func TestOnlyCheckpointHasEpochs(t *testing.T) {
	for _, proto := range []string{ProtocolChain, ProtocolPrimaryBackup, ProtocolCheckpoint} {
		core, err := newCore(proto, "n1", CoreOptions{}, newTestReplica(t, "x").sm)
		if err != nil {
			t.Fatal(err)
		}
		epochs := core.Status().Epochs.Interval > 0
		refused := errors.Is(core.CloseEpoch(1, nil), protocol.ErrNoEpochs)
		if want := proto == ProtocolCheckpoint; epochs != want || refused == want {
			t.Errorf("%s: reports epochs %t, refuses a delta for having none %t", proto, epochs, refused)
		}
	}
}
