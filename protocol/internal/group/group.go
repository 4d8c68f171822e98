// Package group holds the bookkeeping the protocol cores share about a
// replica's place in its group, above the wire format of package wire:
// the role a primary-backup configuration gives a replica, the checks
// every message passes before its handler, the primary's table of links
// to its backups and the backup's link to the primary, the tick timers
// that resend and say Hello again, the hold of a snapshot point, and the
// barrier of a joiner made member.
//
// pb (which ships log entries) and checkpoint (which ships whole
// checkpoints) keep a primary and its backups alike and differ in what
// the primary sends and how a backup installs it; this package holds
// only what they do alike, and chain uses its timers, barrier and
// message checks. Errors it returns wrap the sentinels of the core that
// calls it, so that each core's errors keep their identity.
package group

// Defaults of the tick timers, the same in every core because the timers
// are.
const (
	DefaultResendTicks = 10
	DefaultHelloTicks  = 10
)

// OrDefault is v if it is positive, else d: the rule by which zero (and
// negative) Options fields of every core take their defaults.
func OrDefault(v, d int) int {
	if v <= 0 {
		return d
	}
	return v
}

// Timer counts the ticks a link has waited for progress: acks from a
// peer its sent entries are waiting for, or any word from a primary this
// replica is behind. Progress resets it.
type Timer struct{ n int }

// Reset starts the count again, on progress.
func (t *Timer) Reset() { t.n = 0 }

// Tick counts one tick and reports whether the timer fired: waiting has
// held for limit ticks in a row. Firing, or a tick that is not waiting,
// starts the count again.
func (t *Timer) Tick(waiting bool, limit int) bool {
	if !waiting {
		t.n = 0
		return false
	}
	t.n++
	if t.n < limit {
		return false
	}
	t.n = 0
	return true
}

// Barrier tells a joiner made member when it holds every entry that may
// have been committed without it: the member upstream of it reports how
// far it must go in its first message of the new configuration (which
// also proves that member has left the old one), and it must then apply
// that far.
type Barrier struct {
	Pending bool   // waiting for the first message from upstream in this configuration
	Seq     uint64 // how far the replica must apply
}

// Reconfigure follows a new configuration: a replica that is not a
// member (or is the joiner) has no barrier, and a joiner made member
// waits for the first message from upstream.
func (b *Barrier) Reconfigure(member, wasJoining bool) {
	switch {
	case !member:
		*b = Barrier{}
	case wasJoining:
		b.Pending = true
	}
}

// Learn takes seq, upstream's report in a message of this configuration,
// as the barrier if it is the first such message.
func (b *Barrier) Learn(seq uint64) {
	if b.Pending {
		b.Pending, b.Seq = false, max(b.Seq, seq)
	}
}

// Passed reports whether a member that has applied up to applied is past
// its barrier.
func (b *Barrier) Passed(applied uint64) bool {
	return !b.Pending && applied >= b.Seq
}
