package kv

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/lockstep/lockstep/statemachine"
	"github.com/lockstep/lockstep/storage"
)

// updateVersion is the first byte of every Update. A replica that meets
// another version refuses it rather than guess.
//
// Layout, all lengths and counts as uvarints:
//
//	version | len(reply) reply | count | count ops
//	op: kind | len(key) key                            (OpDelete)
//	op: kind | len(key) key | len(value) value | expireAt  (OpSet)
//	op: kind                                           (OpClear)
//
// The kind byte's low four bits are the storage.OpKind; version 2 puts
// the op's storage.PrevHint in the high four (version 1 had none), which
// the node that prepares the update reads once so that the replicas
// applying it need not (see Machine.hint).
const updateVersion = 2

// kindBits masks the storage.OpKind out of an op's kind byte.
const kindBits = 0x0f

// maxScratch is the capacity above which Prepare's reused buffers are
// dropped after use, so one huge command does not pin memory forever.
const maxScratch = 64 << 10

// prep accumulates the effects of one Prepare: the reply and the storage
// operations. Its slices are reused from one Prepare to the next.
type prep struct {
	now   int64
	reply []byte
	ops   []storage.Op
	buf   []byte // holds one computed value (INCR, APPEND)
}

func (p *prep) reset(now int64) {
	p.now = now
	p.reply = p.reply[:0]
	p.ops = p.ops[:0]
	p.buf = p.buf[:0]
}

// release drops references to the request and the store once the Update is
// encoded, so the scratch space pins neither.
func (p *prep) release() {
	clear(p.ops)
	if cap(p.ops) > 1024 {
		p.ops = nil
	}
	if cap(p.reply) > maxScratch {
		p.reply = nil
	}
	if cap(p.buf) > maxScratch {
		p.buf = nil
	}
}

func (p *prep) set(key, value []byte, expireAt int64) {
	p.ops = append(p.ops, storage.Op{Kind: storage.OpSet, Key: key, Entry: storage.Entry{Value: value, ExpireAt: expireAt}})
}

func (p *prep) del(key []byte) {
	p.ops = append(p.ops, storage.Op{Kind: storage.OpDelete, Key: key})
}

func (p *prep) clearAll() {
	p.ops = append(p.ops, storage.Op{Kind: storage.OpClear})
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// encodeUpdate lays reply and ops out in one exactly sized allocation.
func encodeUpdate(reply []byte, ops []storage.Op) statemachine.Update {
	return appendUpdate(nil, reply, ops)
}

// appendUpdate is encodeUpdate behind a copy of dst, in one allocation.
func appendUpdate(dst, reply []byte, ops []storage.Op) statemachine.Update {
	n := 1 + uvarintLen(uint64(len(reply))) + len(reply) + uvarintLen(uint64(len(ops)))
	for i := range ops {
		op := &ops[i]
		n++
		if op.Kind == storage.OpClear {
			continue
		}
		n += uvarintLen(uint64(len(op.Key))) + len(op.Key)
		if op.Kind == storage.OpSet {
			v := op.Entry.Value
			n += uvarintLen(uint64(len(v))) + len(v) + uvarintLen(uint64(op.Entry.ExpireAt))
		}
	}
	// Exactly the size needed: the Update may live long in a log.
	b := append(make([]byte, 0, len(dst)+n), dst...)
	b = append(b, updateVersion)
	b = appendBytes(b, reply)
	b = binary.AppendUvarint(b, uint64(len(ops)))
	for i := range ops {
		op := &ops[i]
		b = append(b, byte(op.Kind)|byte(op.Prev)<<4)
		if op.Kind == storage.OpClear {
			continue
		}
		b = appendBytes(b, op.Key)
		if op.Kind == storage.OpSet {
			b = appendBytes(b, op.Entry.Value)
			b = binary.AppendUvarint(b, uint64(op.Entry.ExpireAt))
		}
	}
	return b
}

func corruptUpdate(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{statemachine.ErrCorruptUpdate}, args...)...)
}

// decodeHeader splits u into its reply, its op count and the encoded ops.
// The count is checked against the bytes left (every op takes at least one),
// so garbage cannot make the caller allocate a huge op slice.
func decodeHeader(u []byte) (reply []byte, n int, body []byte, err error) {
	if len(u) == 0 {
		return nil, 0, nil, corruptUpdate("empty")
	}
	if u[0] != updateVersion && u[0] != 1 {
		return nil, 0, nil, corruptUpdate("version %d", u[0])
	}
	rest := u[1:]
	if reply, rest, err = readBytes(rest); err != nil {
		return nil, 0, nil, err
	}
	count, rest, err := readUvarint(rest)
	if err != nil {
		return nil, 0, nil, err
	}
	if count > uint64(len(rest)) {
		return nil, 0, nil, corruptUpdate("%d ops in %d bytes", count, len(rest))
	}
	return reply, int(count), rest, nil
}

// decodeOps fills ops (already sized to the header's count) from body,
// the ops of an update of the given version. The ops' slices alias body.
func decodeOps(version byte, body []byte, ops []storage.Op) error {
	var err error
	for i := range ops {
		if len(body) == 0 {
			return corruptUpdate("op %d missing", i)
		}
		op := &ops[i]
		op.Kind, op.Prev, body = storage.OpKind(body[0]&kindBits), storage.PrevHint(body[0]>>4), body[1:]
		if op.Prev > storage.PrevExpiring || (op.Prev != storage.PrevUnknown && (op.Kind == storage.OpClear || version < 2)) {
			return corruptUpdate("op %d has hint %d", i, op.Prev)
		}
		switch op.Kind {
		case storage.OpClear:
			continue
		case storage.OpSet, storage.OpDelete:
		default:
			return corruptUpdate("op %d has kind %d", i, op.Kind)
		}
		if op.Key, body, err = readBytes(body); err != nil {
			return err
		}
		if op.Kind == storage.OpDelete {
			continue
		}
		if op.Entry.Value, body, err = readBytes(body); err != nil {
			return err
		}
		var exp uint64
		if exp, body, err = readUvarint(body); err != nil {
			return err
		}
		if exp > math.MaxInt64 {
			return corruptUpdate("op %d expires at %d", i, exp)
		}
		op.Entry.ExpireAt = int64(exp)
	}
	if len(body) != 0 {
		return corruptUpdate("%d trailing bytes", len(body))
	}
	return nil
}

func readUvarint(b []byte) (uint64, []byte, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, nil, corruptUpdate("bad varint")
	}
	return v, b[n:], nil
}

func readBytes(b []byte) ([]byte, []byte, error) {
	n, rest, err := readUvarint(b)
	if err != nil {
		return nil, nil, err
	}
	if n > uint64(len(rest)) {
		return nil, nil, corruptUpdate("length %d exceeds %d bytes left", n, len(rest))
	}
	return rest[:n:n], rest[n:], nil
}

// releaseOps empties an applied Batch's ops, so the reused Batch does not
// keep the last Update's keys and values alive, and drops an ops array a
// large MSET grew.
func releaseOps(b *storage.Batch) {
	clear(b.Ops)
	b.Ops = b.Ops[:0]
	if cap(b.Ops) > 64 {
		b.Ops = nil
	}
}

// detachOps copies keys and values out of an Update of updateLen bytes
// when they are a small part of it. A store may keep the slices it is given
// (Memory does), and a key should not pin a large Update, such as an MSET
// or a SET that carries a big old value in its GET reply, after the rest of
// it is gone.
func detachOps(ops []storage.Op, updateLen int) {
	for i := range ops {
		op := &ops[i]
		if op.Kind != storage.OpSet {
			continue
		}
		kl, vl := len(op.Key), len(op.Entry.Value)
		if updateLen <= 2*(kl+vl)+64 {
			continue
		}
		buf := make([]byte, kl+vl)
		copy(buf, op.Key)
		copy(buf[kl:], op.Entry.Value)
		op.Key, op.Entry.Value = buf[:kl:kl], buf[kl:]
	}
}
