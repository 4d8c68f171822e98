package sim

import (
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
)

// String names the operation as a simulation's trace shows it.
func (op KVOp) String() string {
	switch op {
	case KVGet:
		return "get"
	case KVPut:
		return "put"
	case KVAppend:
		return "append"
	}
	return fmt.Sprintf("KVOp(%d)", uint8(op))
}

// KVEntry encodes a write as the data of a log entry: the op byte, the
// key, a NUL, the value. KVStore.Apply decodes it.
func KVEntry(op KVOp, key, value string) []byte {
	return append(append([]byte{byte(op)}, key...), append([]byte{0}, value...)...)
}

// EntryDigest identifies an entry's data, so that a simulation can tell
// whether two replicas hold the same entry at a seq without keeping the
// data. It is never 0, which stands for "no entry".
func EntryDigest(data []byte) uint64 {
	h := fnv.New64a()
	h.Write(data)
	return h.Sum64() | 1
}

// KVStore is the state machine of a simulated replica: a map of strings
// that KVEntry writes change, with a digest of every entry applied and of
// every prefix of the history, so that invariants compare replicas in
// constant time: two replicas that applied the same entries 1..s have the
// same Prefix[s].
type KVStore struct {
	KV      map[string]string
	Applied uint64   // the last seq applied
	Digest  []uint64 // Digest[s]: EntryDigest of the entry applied at s (index 0 unused)
	Prefix  []uint64 // Prefix[s]: digest of the history 1..s
}

// NewKVStore returns an empty store, at seq 0.
func NewKVStore() KVStore {
	return KVStore{KV: map[string]string{}, Digest: []uint64{0}, Prefix: []uint64{0}}
}

// Apply applies the entry at seq, which must be the next one.
func (s *KVStore) Apply(seq uint64, data []byte) error {
	if seq != s.Applied+1 {
		return fmt.Errorf("applies seq %d after %d", seq, s.Applied)
	}
	op, rest := KVOp(data[0]), string(data[1:])
	key, value, ok := strings.Cut(rest, "\x00")
	if !ok {
		return fmt.Errorf("corrupt entry %d", seq)
	}
	switch op {
	case KVPut:
		s.KV[key] = value
	case KVAppend:
		s.KV[key] += value
	default:
		return fmt.Errorf("entry %d has op %d", seq, uint8(op))
	}
	d := EntryDigest(data)
	s.Digest = append(s.Digest, d)
	s.Prefix = append(s.Prefix, s.Prefix[len(s.Prefix)-1]*1099511628211^d)
	s.Applied = seq
	return nil
}

// KVSnapshot is a store's state at one seq, as a snapshot transfer carries
// it from one replica to another.
type KVSnapshot struct {
	Seq    uint64
	kv     map[string]string
	digest []uint64
	prefix []uint64
}

// Snapshot copies the state at the applied seq.
func (s *KVStore) Snapshot() *KVSnapshot {
	return &KVSnapshot{
		Seq:    s.Applied,
		kv:     maps.Clone(s.KV),
		digest: slices.Clone(s.Digest[:s.Applied+1]),
		prefix: slices.Clone(s.Prefix[:s.Applied+1]),
	}
}

// Restore replaces the state with snap's. The state may go back: a
// primary-backup replica drops a suffix the new primary never had.
func (s *KVStore) Restore(snap *KVSnapshot) {
	s.KV, s.Digest, s.Prefix = snap.kv, slices.Clone(snap.digest), slices.Clone(snap.prefix)
	s.Applied = snap.Seq
}
