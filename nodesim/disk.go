package nodesim

import (
	"errors"
	"fmt"

	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/storage"
)

// errDiskFault is a failed fsync.
var errDiskFault = errors.New("nodesim: fsync failed")

// syncFaultRate is the chance, while faults strike, that one Sync fails
// (a few failures in every hundred seeds of each protocol);
// cleanSyncFaultRate that the fsync of a clean-stop record does, more
// often, since a node writes one only when it stops.
const (
	syncFaultRate      = 1.0 / 600
	cleanSyncFaultRate = 1.0 / 30
)

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
	// clean is the clean-stop record (cmd/lockstep's clean-stop.json) as
	// the process sees the directory, cleanSynced as a crash leaves it;
	// crashes counts the crashes, so that a deletion a crash overtook is
	// not made durable after it.
	clean, cleanSynced *coord.Clean
	crashes            int
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

// crash loses what was not synced, the clean-stop record included.
func (d *disk) crash() {
	d.w.logf("disk %s: applied %d, synced %d", d.id, d.Memory.AppliedSeq(), d.synced.AppliedSeq())
	d.Memory, d.failed = d.synced.Clone(), false
	d.clean = d.cleanSynced
	d.crashes++
}

// journalCommit bounds, in milliseconds, how long a file's deletion may
// stay in the filesystem's journal before it is durable (ext4 commits
// every 5 s); a WAL fsync need not commit it sooner.
const journalCommit = 5000

// writeClean writes the clean-stop record; it survives a crash only once
// syncClean has made it durable, as the server's write, fsync, rename and
// directory fsync do.
func (d *disk) writeClean(rec coord.Clean) { d.clean = &rec }

// syncClean makes the record durable, or fails as an fsync does; the
// server then leaves no record, and neither does this.
func (d *disk) syncClean() error {
	if d.w.faulty && d.w.p.Faults > 0 && d.w.rng.Float64() < cleanSyncFaultRate*d.w.p.Faults {
		d.w.stats.Inc("clean stop record fsync failed")
		d.clean = d.cleanSynced
		return errDiskFault
	}
	d.cleanSynced = d.clean
	return nil
}

// takeClean reads and deletes the clean-stop record, as a starting server
// does, since the state moves on once the node runs. The server does not
// sync the deletion, so it becomes durable only when the filesystem
// commits it, within journalCommit: a crash before then brings the record
// back, beside a store that may have applied more since.
func (d *disk) takeClean() (coord.Clean, bool) {
	rec := d.clean
	if rec == nil {
		return coord.Clean{}, false
	}
	d.clean = nil
	crashes := d.crashes
	d.w.after(d.w.rng.Int64N(journalCommit), func() {
		if d.crashes == crashes && d.cleanSynced == rec {
			d.cleanSynced = nil
		}
	})
	return *rec, true
}
