package group

import (
	"fmt"
	"github.com/lockstep/lockstep/protocol"
	"slices"
)

// Role is a replica's place in a primary-backup configuration, which pb
// and checkpoint give alike. (Chain's places differ and are its own.)
type Role uint8

const (
	RoleNone    Role = iota // not in the configuration
	RolePrimary             // the first member: orders the group's history
	RoleBackup              // any other member
	RoleJoining             // the configuration's joiner, catching up
)

// String names the role for logs and status output.
func (r Role) String() string {
	switch r {
	case RoleNone:
		return "none"
	case RolePrimary:
		return "primary"
	case RoleBackup:
		return "backup"
	case RoleJoining:
		return "joining"
	}
	return "unknown"
}

// Errors are the sentinels of one core, which the checks here wrap.
type Errors struct {
	StaleEpoch error // a message from another epoch
	Unexpected error // a message that does not fit the replica's place
}

// Envelope is the addressing every message of every core carries: what
// the checks here read of it.
type Envelope struct {
	Type  fmt.Stringer
	From  string
	To    string
	Epoch uint64
}

// Admit is the check every message passes before its handler at replica
// id in epoch (0 before its first configuration): a message of another
// epoch is stale (a replica still in an older configuration thus refuses
// a newer one's messages until it has the configuration, and says so with
// protocol.ErrFutureEpoch), and one for another replica unexpected.
func (e Errors) Admit(id string, epoch uint64, m Envelope) error {
	if m.Epoch > epoch {
		// The sender installed a configuration this replica has not
		// received yet: the runtime keeps the message for it.
		return fmt.Errorf("%w (%w): %s from %s in epoch %d, current %d", e.StaleEpoch, protocol.ErrFutureEpoch, m.Type, m.From, m.Epoch, epoch)
	}
	if epoch == 0 || m.Epoch != epoch {
		return fmt.Errorf("%w: %s from %s in epoch %d, current %d", e.StaleEpoch, m.Type, m.From, m.Epoch, epoch)
	}
	if m.To != id {
		return fmt.Errorf("%w: %s for %q delivered to %q", e.Unexpected, m.Type, m.To, id)
	}
	return nil
}

// View is a replica's reading of the current configuration (view) of a
// primary-backup group: the epoch, its role, and who the primary is.
// pb and checkpoint derive it alike and check every message against it.
type View struct {
	ID      string // this replica, as configurations list it
	Epoch   uint64 // 0 before the first configuration
	Role    Role
	Primary string // Members[0] of the configuration
	errs    Errors
}

// NewView is the view of replica id before any configuration; its checks
// wrap errs.
func NewView(id string, errs Errors) View {
	return View{ID: id, errs: errs}
}

// Set reads a configuration the core has validated: the first member is
// the primary, the other members are backups.
func (v *View) Set(epoch uint64, members []string, joining string) {
	v.Epoch = epoch
	v.Primary, v.Role = members[0], RoleNone
	switch {
	case members[0] == v.ID:
		v.Role = RolePrimary
	case slices.Contains(members[1:], v.ID):
		v.Role = RoleBackup
	case joining == v.ID:
		v.Role = RoleJoining
	}
}

// Member reports whether the replica counts in the configuration: it is
// the primary or a backup.
func (v *View) Member() bool { return v.Role == RolePrimary || v.Role == RoleBackup }

// Follows reports whether the replica follows a primary: it is a backup
// or the joiner.
func (v *View) Follows() bool { return v.Role == RoleBackup || v.Role == RoleJoining }

// Admit checks a message's epoch and recipient; see Errors.Admit.
func (v *View) Admit(m Envelope) error { return v.errs.Admit(v.ID, v.Epoch, m) }

// FromPrimary checks that m comes from the primary to a backup or joiner.
func (v *View) FromPrimary(m Envelope) error {
	if !v.Follows() || m.From != v.Primary {
		return fmt.Errorf("%w: %s from %s to %s %s, primary %q in epoch %d", v.errs.Unexpected, m.Type, m.From, v.Role, v.ID, v.Primary, v.Epoch)
	}
	return nil
}

// NotPeer is the error for m, whose sender is not a backup or the joiner
// of this replica as primary.
func (v *View) NotPeer(m Envelope) error {
	return fmt.Errorf("%w: %s from %s, which is not a peer of primary %q in epoch %d", v.errs.Unexpected, m.Type, m.From, v.Primary, v.Epoch)
}

// EarlyAck is the error for an ack of seq from a peer whose Hello the
// primary has not accepted in this epoch: the ack may speak of another
// history than the primary's.
func (v *View) EarlyAck(seq uint64, from string) error {
	return fmt.Errorf("%w: ack %d from %s before its Hello was accepted in epoch %d", v.errs.Unexpected, seq, from, v.Epoch)
}
