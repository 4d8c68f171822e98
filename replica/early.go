package replica

// Bounds of earlyMessages: a few handshakes' worth. Past them the oldest
// are dropped, which the cores' retransmissions make good.
const (
	earlyMaxMsgs  = 64
	earlyMaxBytes = 4 << 20
)

// earlyMessages holds messages from newer epochs until the next
// configuration is installed. A core refuses such a message with
// protocol.ErrFutureEpoch: its sender installed a configuration this
// replica has not received yet (each node watches etcd on its own), so
// the message is kept and stepped again once a configuration arrives.
// Dropping it would cost a retransmission timeout: at a failover the
// successor's Hello, which opens the new epoch's stream, would wait 10
// ticks to be resent. Guarded by Replica.mu.
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
