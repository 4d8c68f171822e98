package backup

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
)

// Digest is the data digest a backup records and a restore checks: a
// SHA-256 over every record in ascending key order, each as uvarint
// len(key), key, uvarint len(value), value and the expiry as 8 bytes big
// endian. It covers user data only. LOCKSTEP.DIGEST cannot serve here: it
// hashes a replica's snapshot, which also holds the applied seq and the
// dedup table, and a cluster restored from a backup numbers its writes
// afresh and has no dedup records of its own clients. Both sides compute
// this one with this code: the source node and `lockstep backup` as the
// records stream, `lockstep restore` over the file, and the restored
// cluster's node for LOCKSTEP.DATADIGEST.
//
// A digest may leave out records that expire at or before a cut-off
// (AliveAfter), so that a restore that skipped expired keys, on a cluster
// whose expiry sweep deletes keys as they expire, compares like with
// like: both sides drop the same records.
type Digest struct {
	h          hash.Hash
	aliveAfter int64
	keys       int64
	buf        []byte
}

// NewDigest returns an empty digest that leaves out records whose expiry
// is at or before aliveAfter (Unix milliseconds); 0 keeps every record.
func NewDigest(aliveAfter int64) *Digest {
	return &Digest{h: sha256.New(), aliveAfter: aliveAfter}
}

// Add folds one record into the digest, unless it expires by the cut-off.
// Records must come in ascending key order.
func (d *Digest) Add(key, value []byte, expireAt int64) {
	if d.aliveAfter != 0 && expireAt != 0 && expireAt <= d.aliveAfter {
		return
	}
	d.buf = binary.AppendUvarint(d.buf[:0], uint64(len(key)))
	d.h.Write(d.buf)
	d.h.Write(key)
	d.buf = binary.AppendUvarint(d.buf[:0], uint64(len(value)))
	d.h.Write(d.buf)
	d.h.Write(value)
	d.buf = binary.BigEndian.AppendUint64(d.buf[:0], uint64(expireAt))
	d.h.Write(d.buf)
	d.keys++
}

// Keys is the number of records the digest covers.
func (d *Digest) Keys() int64 { return d.keys }

// Sum is the digest of the records added so far.
func (d *Digest) Sum() [32]byte {
	var s [32]byte
	d.h.Sum(s[:0])
	return s
}

// String is the digest in hex, as the commands print it.
func (d *Digest) String() string { return FormatDigest(d.Sum()) }

// FormatDigest renders a digest in hex.
func FormatDigest(s [32]byte) string { return hex.EncodeToString(s[:]) }

// FormatDataDigest is the reply to DigestCommand.
func FormatDataDigest(seq uint64, d *Digest) string {
	return fmt.Sprintf("seq=%d keys=%d sha256=%s", seq, d.Keys(), d)
}

// ParseDataDigest reads a reply to DigestCommand.
func ParseDataDigest(s string) (seq uint64, keys int64, digest string, err error) {
	if _, err := fmt.Sscanf(s, "seq=%d keys=%d sha256=%s", &seq, &keys, &digest); err != nil {
		return 0, 0, "", fmt.Errorf("%w: data digest %q: %w", ErrStream, s, err)
	}
	return seq, keys, digest, nil
}
