package node

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/lockstep/lockstep/storage"
)

// countingStore is a memory store that claims durability and counts Sync
// calls, each of which takes a little time like a disk flush.
type countingStore struct {
	storage.Store
	syncs atomic.Int64
}

func (c *countingStore) Durable() bool { return true }

func (c *countingStore) Sync() error {
	c.syncs.Add(1)
	// The pause is the point: it stands for the disk flush, so writers
	// arriving meanwhile must queue behind it and share the next one.
	time.Sleep(200 * time.Microsecond)
	return nil
}

// failingStore is a durable memory store whose Sync fails.
type failingStore struct{ storage.Store }

func (failingStore) Durable() bool { return true }
func (failingStore) Sync() error   { return errors.New("fsync: input/output error") }
