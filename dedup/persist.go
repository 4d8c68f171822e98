package dedup

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"iter"
	"maps"
	"slices"

	"github.com/lockstep/lockstep/statemachine"
	"github.com/lockstep/lockstep/storage"
)

// The table is durable when the inner machine keeps its state in a store
// (kv.Machine): each record lives in the store's metadata namespace, and
// every change to it is written in the same storage batch as the update it
// goes with, so a crash keeps a write and its record together or neither.
// A machine wrapped over a store that already holds data (a node restarted
// on its data directory) reads the table back, and a client's retry of a
// request applied before the crash is answered instead of applied again.
//
// Record layout, one metadata key per client:
//
//	key:   "dedup/" client id
//	value: recordVersion | uvarint num | uvarint seq | reply (the rest)

// recordPrefix starts every key of the table in the metadata namespace, so
// no other state kept there can collide with it. A snapshot install
// replaces the whole namespace (OpClearMeta), as a snapshot replaces the
// whole state: other state kept there would travel in snapshots too.
const recordPrefix = "dedup/"

// recordVersion is the first byte of a stored record. A process that finds
// another version refuses to start rather than guess.
const recordVersion = 1

// durableInner is an inner machine that can write the table into its
// store with its own updates (kv.Machine).
type durableInner interface {
	ApplyWithMeta(seq uint64, u statemachine.Update, out []byte, meta func(reply []byte) []storage.Op) ([]byte, error)
	RestoreWithMeta(r io.Reader, meta []storage.Op) error
	Store() storage.Store
}

// newRecord makes a record and its stored value in one allocation: the
// record's reply is the tail of the value, so the table and a store that
// keeps the value (storage.Memory) share one copy. Neither modifies it.
func newRecord(num, seq uint64, reply []byte) (record, []byte) {
	v := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(reply))
	v = append(v, recordVersion)
	v = binary.AppendUvarint(v, num)
	v = binary.AppendUvarint(v, seq)
	head := len(v)
	v = append(v, reply...)
	return record{num: num, seq: seq, reply: v[head:len(v):len(v)]}, v
}

// decodeRecord reads a stored value; the record's reply aliases v.
func decodeRecord(v []byte) (record, bool) {
	if len(v) == 0 || v[0] != recordVersion {
		return record{}, false
	}
	rest := v[1:]
	num, k := binary.Uvarint(rest)
	if k <= 0 {
		return record{}, false
	}
	rest = rest[k:]
	seq, k := binary.Uvarint(rest)
	if k <= 0 {
		return record{}, false
	}
	return record{num: num, seq: seq, reply: rest[k:]}, true
}

func recordKey(client string) []byte {
	return append([]byte(recordPrefix), client...)
}

func setRecordOp(client string, value []byte) storage.Op {
	return storage.Op{Kind: storage.OpSetMeta, Key: recordKey(client), Entry: storage.Entry{Value: value}}
}

func deleteRecordOp(client string) storage.Op {
	return storage.Op{Kind: storage.OpDeleteMeta, Key: recordKey(client)}
}

// load reads the table a durable inner machine's store holds.
func (m *Machine) load() error {
	var bad error
	err := m.durable.Store().ScanMeta([]byte(recordPrefix), func(k, v []byte) bool {
		client := string(k[len(recordPrefix):])
		// The value is only valid during the call.
		r, ok := decodeRecord(bytes.Clone(v))
		if !ok {
			bad = fmt.Errorf("%w: dedup record of client %q", storage.ErrCorrupt, client)
			return false
		}
		m.table[client] = r
		return true
	})
	if err != nil {
		return fmt.Errorf("dedup: load table: %w", err)
	}
	return bad
}

// tableOps replaces the whole stored table with table: a clear of the
// metadata namespace, then each record, in client order so equal tables
// give equal batches.
func tableOps(table map[string]record) []storage.Op {
	ops := make([]storage.Op, 0, 1+len(table))
	ops = append(ops, storage.Op{Kind: storage.OpClearMeta})
	for _, c := range slices.Sorted(maps.Keys(table)) {
		r := table[c]
		_, v := newRecord(r.num, r.seq, r.reply)
		ops = append(ops, setRecordOp(c, v))
	}
	return ops
}

// evictionsLocked returns the clients to drop so that the table, with
// changes applied (a record with num 0 removes its client), holds at most
// max records: those whose last request is oldest. It runs before the
// update that makes the changes, so their deletes go in its batch.
func (m *Machine) evictionsLocked(changes map[string]record) []string {
	size := len(m.table)
	for c, r := range changes {
		_, had := m.table[c]
		switch {
		case r.num == 0 && had:
			size--
		case r.num != 0 && !had:
			size++
		}
	}
	if size <= m.max {
		return nil
	}
	after := func(yield func(string, record) bool) {
		for c, r := range m.table {
			if _, changed := changes[c]; !changed && !yield(c, r) {
				return
			}
		}
		for c, r := range changes {
			if r.num != 0 && !yield(c, r) {
				return
			}
		}
	}
	return oldest(size-m.max, after)
}

// oldest returns the n clients with the lowest seqs in recs, ties broken
// by client id, so every replica picks the same ones. One, the usual case
// of a new client joining a full table, costs a single pass.
func oldest(n int, recs iter.Seq2[string, record]) []string {
	type aged struct {
		client string
		seq    uint64
	}
	older := func(a, b aged) int {
		return cmp.Or(cmp.Compare(a.seq, b.seq), cmp.Compare(a.client, b.client))
	}
	if n == 1 {
		var best aged
		first := true
		for c, r := range recs {
			if a := (aged{c, r.seq}); first || older(a, best) < 0 {
				best, first = a, false
			}
		}
		return []string{best.client}
	}
	var all []aged
	for c, r := range recs {
		all = append(all, aged{c, r.seq})
	}
	slices.SortFunc(all, older)
	out := make([]string, 0, n)
	for _, a := range all[:min(n, len(all))] {
		out = append(out, a.client)
	}
	return out
}
