package replica

import "errors"

// errFutureEpoch: a core refused a message from an epoch newer than the
// one it runs. Its sender installed a configuration this replica has not
// received yet (each node watches etcd on its own), so the message is
// kept and stepped again once a configuration arrives. Dropping it would
// cost a retransmission timeout: at a failover the successor's Hello,
// which opens the new epoch's stream, would wait 10 ticks to be resent.
var errFutureEpoch = errors.New("lockstep: message from a newer epoch")

// epochRefusal maps a core's Step error: a refusal for the epoch (stale is
// the core's ErrStaleEpoch) is errFutureEpoch if the message is newer than
// the core's epoch and nothing (the message is dropped) if it is older.
func epochRefusal(err, stale error, msgEpoch uint64, coreEpoch func() uint64) error {
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, stale):
		return err
	case msgEpoch > coreEpoch():
		return errFutureEpoch
	default:
		return nil
	}
}

// Bounds of earlyMessages: a few handshakes' worth. Past them the oldest
// are dropped, which the cores' retransmissions make good.
const (
	earlyMaxMsgs  = 64
	earlyMaxBytes = 4 << 20
)

// earlyMessages holds messages from newer epochs until the next
// configuration is installed. Guarded by Replica.mu.
type earlyMessages struct {
	msgs  [][]byte
	bytes int
}

// keep stores a copy of payload (the transport reuses its buffer).
func (e *earlyMessages) keep(payload []byte) {
	e.msgs = append(e.msgs, append([]byte(nil), payload...))
	e.bytes += len(payload)
	for len(e.msgs) > earlyMaxMsgs || (e.bytes > earlyMaxBytes && len(e.msgs) > 1) {
		e.bytes -= len(e.msgs[0])
		e.msgs = e.msgs[1:]
	}
}

// take returns the kept messages in arrival order and forgets them.
func (e *earlyMessages) take() [][]byte {
	msgs := e.msgs
	e.msgs, e.bytes = nil, 0
	return msgs
}
