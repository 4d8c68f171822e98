package nodesim

import (
	"errors"
	"fmt"

	"github.com/lockstep/lockstep/storage"
)

// errDiskFault is a failed fsync.
var errDiskFault = errors.New("nodesim: fsync failed")

// syncFaultRate is the chance, while faults strike, that one Sync fails:
// a few failures in every hundred seeds of each protocol.
const syncFaultRate = 1.0 / 600

// disk is a node's data directory on durable storage: the store as its
// process applied to it, and as of the last Sync, which is all a crash
// leaves. A restarted process opens it again, keeps it or starts a new
// one, as coord.KeepData decides for a server.
type disk struct {
	*storage.Memory
	w      *World
	id     string // the directory's data id (coord.NodeInfo.DataID)
	synced *storage.Memory
	// failed records that a Sync failed, the one storage failure the
	// simulation injects: a replica that stops on ErrStorage without it
	// was handed an update it could not apply.
	failed bool
}

func newDisk(w *World, name string) *disk {
	m := storage.NewMemory()
	return &disk{Memory: m, w: w, id: fmt.Sprintf("%s-data-%08x", name, w.rng.Uint32()), synced: m.Clone()}
}

// Durable is true: this store stands for Pebble with --fsync always.
func (d *disk) Durable() bool { return true }

// Sync makes what was applied survive a crash, or fails as a disk does.
func (d *disk) Sync() error {
	if d.w.faulty && d.w.p.Faults > 0 && d.w.rng.Float64() < syncFaultRate*d.w.p.Faults {
		d.w.stats.Inc("fsync failed")
		d.failed = true
		return errDiskFault
	}
	d.synced = d.Memory.Clone()
	return nil
}

// crash loses what was not synced.
func (d *disk) crash() {
	d.w.logf("disk %s: applied %d, synced %d", d.id, d.Memory.AppliedSeq(), d.synced.AppliedSeq())
	d.Memory, d.failed = d.synced.Clone(), false
}
