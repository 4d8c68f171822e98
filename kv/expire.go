package kv

import (
	"bytes"
	"fmt"

	"github.com/lockstep/lockstep/statemachine"
	"github.com/lockstep/lockstep/storage"
)

// PrepareExpireSweep examines up to limit keys after the key `after` (from
// the start when after is nil) and returns an Update deleting those that
// expired before env's time, or nil when none did. next is where the
// following call should resume, or nil once the keyspace has been covered.
//
// Reads already hide expired keys; the sweep returns their memory and
// brings DBSIZE back to the live count, like Redis's active expiry. It is a
// write like any other: the ordering replica prepares it and every replica
// applies the same deletes, so replicas never expire keys by their own
// clocks.
func (m *Machine) PrepareExpireSweep(after []byte, limit int, env statemachine.Env) (statemachine.Update, []byte, error) {
	if limit <= 0 {
		limit = 1
	}
	now := env.NowMillis()
	var (
		dead    [][]byte
		last    []byte
		scanned int
	)
	err := m.store.Scan(after, func(key []byte, e storage.Entry) bool {
		if after != nil && scanned == 0 && bytes.Equal(key, after) {
			return true // resume strictly after the last key examined
		}
		scanned++
		if expired(e, now) {
			dead = append(dead, bytes.Clone(key))
		}
		if scanned == limit {
			last = bytes.Clone(key)
			return false
		}
		return true
	})
	if err != nil {
		return nil, nil, fmt.Errorf("kv: expire sweep: %w", err)
	}
	if len(dead) == 0 {
		return nil, last, nil
	}
	ops := make([]storage.Op, len(dead))
	for i, k := range dead {
		ops[i] = storage.Op{Kind: storage.OpDelete, Key: k}
	}
	return encodeUpdate(nil, ops), last, nil
}
