// Package storage holds a replica's keyspace: an ordered map from key to
// value and absolute expiry, plus the sequence number of the last update
// applied to it. Two implementations share one contract and one test suite:
// Memory (an ordered in-memory tree) and Pebble (durable, on disk).
package storage

import (
	"errors"
	"fmt"
)

// Entry is the stored form of one key's value.
type Entry struct {
	Value []byte
	// ExpireAt is the absolute expiry in Unix milliseconds; 0 means never.
	ExpireAt int64
}

// OpKind names one kind of change in a Batch.
type OpKind uint8

const (
	// OpSet stores Entry under Key, replacing any previous entry.
	OpSet OpKind = iota + 1
	// OpDelete removes Key; deleting a missing key is not an error.
	OpDelete
	// OpClear removes every user key (FLUSHALL). The metadata namespace
	// is left alone.
	OpClear
	// OpSetMeta stores Entry.Value under Key in the metadata namespace
	// (Entry.ExpireAt is ignored). Metadata is state a wrapping state
	// machine keeps beside the user keys, such as dedup's table of last
	// replies: it is written in the same atomic Batch as the user ops it
	// goes with, but no Get, Scan, View, Stats or OpClear sees it, so a
	// client can neither read nor overwrite it. ScanMeta reads it back.
	OpSetMeta
	// OpDeleteMeta removes Key from the metadata namespace; deleting a
	// missing key is not an error.
	OpDeleteMeta
	// OpClearMeta removes every metadata key. A Replace batch that
	// installs a whole state with metadata starts its metadata with it.
	OpClearMeta
)

// IsMeta reports whether k changes the metadata namespace only.
func (k OpKind) IsMeta() bool {
	return k == OpSetMeta || k == OpDeleteMeta || k == OpClearMeta
}

// Op is one change in a Batch.
type Op struct {
	Kind  OpKind
	Key   []byte
	Entry Entry
	// Prev, for OpSet and OpDelete, is what Key held before the Batch,
	// if whoever made the op knows it (PrevUnknown otherwise). A store
	// that keeps counters (Stats) needs each key's previous entry; a hint
	// saves it the read. It must be true of the store the Batch is
	// applied to: a replica's update carries the hints its ordering node
	// read, which hold at every replica because they apply the same
	// history. A hint for a key an earlier op of the same Batch touched is
	// ignored.
	Prev PrevHint
}

// PrevHint is what an op's key held before its Batch (see Op.Prev).
type PrevHint uint8

const (
	PrevUnknown  PrevHint = iota // the store reads the key
	PrevAbsent                   // no entry
	PrevPresent                  // an entry without expiry
	PrevExpiring                 // an entry with an expiry (expired or not)
)

// HintOf is the hint for a key whose entry is e, or none if !found.
func HintOf(e Entry, found bool) PrevHint {
	switch {
	case !found:
		return PrevAbsent
	case e.ExpireAt != 0:
		return PrevExpiring
	}
	return PrevPresent
}

// Batch is a set of changes applied atomically together with the sequence
// number of the update that produced them.
//
// Seq must be strictly greater than the store's AppliedSeq, so the first
// Batch of a fresh store needs Seq >= 1. There is no exception for Seq 0:
// a replica's history is numbered from 1, and refusing repeats is what lets
// a replica ignore an update it already applied before a restart.
//
// A Replace batch is the exception: it installs a whole new state (a
// snapshot from another replica), so its first op must be OpClear, and its
// Seq may be any value, lower than AppliedSeq included. OpClear leaves the
// metadata namespace alone, so a Replace batch that installs metadata too
// carries an OpClearMeta and the OpSetMeta ops after the clear. A primary-backup
// replica that applied entries of a deposed primary goes back to the new
// primary's history this way.
type Batch struct {
	Ops     []Op
	Seq     uint64
	Replace bool
}

// checkSeq reports whether b may follow a store whose AppliedSeq is cur.
func (b *Batch) checkSeq(cur uint64) error {
	if b.Replace {
		if len(b.Ops) == 0 || b.Ops[0].Kind != OpClear {
			return fmt.Errorf("%w: a replace batch must start with a clear", ErrBadOp)
		}
		return nil
	}
	if b.Seq <= cur {
		return fmt.Errorf("%w: seq %d after %d", ErrOutOfOrder, b.Seq, cur)
	}
	return nil
}

// Stats counts what a store holds.
type Stats struct {
	Keys    int64 // live and not-yet-purged expired keys
	Expires int64 // keys with a non-zero ExpireAt
}

// Common errors, wrapped with %w.
var (
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("lockstep: storage closed")
	// ErrOutOfOrder means a Batch's Seq was not greater than AppliedSeq.
	ErrOutOfOrder = errors.New("lockstep: batch sequence out of order")
	// ErrWrongCluster means a data directory belongs to another cluster or
	// node than the one opening it.
	ErrWrongCluster = errors.New("lockstep: data directory belongs to another cluster")
	// ErrBadOp means a Batch held an Op with an unknown Kind. Apply checks
	// every Op before changing anything, so the store is left as it was.
	ErrBadOp = errors.New("lockstep: unknown storage op kind")
)

// Store is an ordered keyspace, with a separate namespace of metadata keys
// (see OpSetMeta) that only ScanMeta reads.
//
// Concurrency: every method is safe for concurrent use. Apply calls are
// applied in the order they are made, and a Get, Scan or Stats sees either
// all or none of a Batch. Slices passed to Apply may be kept by the store and
// must not be modified afterwards. Slices a Store returns (from Get and to a
// Scan callback) must not be modified; those passed to a Scan callback are
// valid only during the call. A Scan callback runs while the store holds a
// read lock, so it must not call methods of the same Store (a writer queued
// behind the lock would deadlock the nested call) and should be quick; use
// Snapshot for a long scan.
type Store interface {
	// Get returns the entry for key, expired or not.
	Get(key []byte) (Entry, bool, error)
	// Apply applies b atomically. It does not wait for durability: call
	// Sync for that. It fails with ErrOutOfOrder, changing nothing, unless
	// b.Seq > AppliedSeq or b is a Replace batch. A Replace batch is made
	// durable before Apply returns (a durable store must not be found
	// after a crash with the old state's seq and half of the new one).
	Apply(b *Batch) error
	// Scan calls fn for each key >= start in ascending order until fn
	// returns false.
	Scan(start []byte, fn func(key []byte, e Entry) bool) error
	// Stats counts the keys.
	Stats() Stats
	// AppliedSeq is the Seq of the last applied Batch, restored on reopen.
	AppliedSeq() uint64
	// Sync makes every Batch applied before the call durable. Concurrent
	// callers may share one disk flush (group commit). It is a no-op for
	// stores that are not durable.
	Sync() error
	// Durable reports whether the store survives a process crash.
	Durable() bool
	// ScanMeta calls fn for each metadata key that starts with prefix,
	// in ascending order, until fn returns false. It sees all or none of
	// a Batch. Like Scan's, fn runs under a read lock, must not call the
	// store, and must not keep the slices it is passed.
	ScanMeta(prefix []byte, fn func(key, value []byte) bool) error
	// Snapshot returns a consistent read-only view of the user keys as
	// of one Batch (the metadata is not in it).
	Snapshot() (View, error)
	// Close releases the store. A durable store flushes first.
	Close() error
}

// View is a consistent, read-only point-in-time image of a Store, for
// streaming state to a new replica while writes continue. Its methods are
// safe for concurrent use, and its Scan callback may call the Store it came
// from. A View must be closed; once its Store is closed, a View may fail
// with ErrClosed.
type View interface {
	Scan(start []byte, fn func(key []byte, e Entry) bool) error
	Stats() Stats
	AppliedSeq() uint64
	Close() error
}

// AppendKeyspaceInfo appends the INFO keyspace line for s (nothing for an
// empty store, as Redis prints nothing for an empty database).
func AppendKeyspaceInfo(b []byte, s Store) []byte {
	st := s.Stats()
	if st.Keys == 0 {
		return b
	}
	return fmt.Appendf(b, "db0:keys=%d,expires=%d,avg_ttl=0\r\n", st.Keys, st.Expires)
}

// AppendPersistenceInfo appends the INFO persistence lines every runtime
// shares.
func AppendPersistenceInfo(b []byte, s Store) []byte {
	durable := 0
	if s.Durable() {
		durable = 1
	}
	return fmt.Appendf(b, "loading:0\r\naof_enabled:0\r\nlockstep_storage_durable:%d\r\n", durable)
}
