package transport

import "encoding/binary"

// blockSize is the size of the blocks that hold queued frames.
const blockSize = 64 << 10

// idleBlocks is how many free blocks an idle link keeps for its next burst;
// the rest, grown by the last burst, are let go.
const idleBlocks = 16

// frameQueue holds framed messages in fixed-size blocks. Frames are packed
// end to end and may straddle blocks, since the connection is a byte stream.
// So no space is wasted, the queue never copies what it holds in order to
// grow, and the writer hands all the blocks to the kernel in one writev.
// Written blocks come back through recycle, so a busy link reuses the same
// memory batch after batch and Send does not allocate.
//
// frameQueue is not safe for concurrent use; peer guards it with its mutex.
type frameQueue struct {
	blocks [][]byte // queued data; the last block is being filled
	bytes  int
	msgs   int
	free   [][]byte // empty blocks for reuse
}

// push appends one message frame.
func (q *frameQueue) push(payload []byte) {
	var hdr [binary.MaxVarintLen64]byte
	q.write(hdr[:binary.PutUvarint(hdr[:], uint64(len(payload)))])
	q.write(payload)
	q.msgs++
}

func (q *frameQueue) write(b []byte) {
	q.bytes += len(b)
	for len(b) > 0 {
		i := len(q.blocks) - 1
		if i < 0 || len(q.blocks[i]) == blockSize {
			q.blocks = append(q.blocks, q.block())
			i++
		}
		blk := q.blocks[i]
		n := copy(blk[len(blk):blockSize], b)
		q.blocks[i] = blk[:len(blk)+n]
		b = b[n:]
	}
}

func (q *frameQueue) block() []byte {
	if n := len(q.free); n > 0 {
		b := q.free[n-1]
		q.free[n-1] = nil
		q.free = q.free[:n-1]
		return b
	}
	return make([]byte, 0, blockSize)
}

// take empties the queue, returning its blocks. The queue goes on with list
// (emptied) as its block list, so that two lists alternate without
// allocating.
func (q *frameQueue) take(list [][]byte) (blocks [][]byte, bytes, msgs int) {
	blocks, bytes, msgs = q.blocks, q.bytes, q.msgs
	q.blocks, q.bytes, q.msgs = list[:0], 0, 0
	return blocks, bytes, msgs
}

// recycle puts blocks, no longer referenced elsewhere, on the free list and
// clears the list so that it holds no references.
func (q *frameQueue) recycle(blocks [][]byte) {
	for i, b := range blocks {
		q.free = append(q.free, b[:0])
		blocks[i] = nil
	}
}

// discard drops everything queued and returns how many messages that was.
func (q *frameQueue) discard() int {
	lost := q.msgs
	q.recycle(q.blocks)
	q.blocks, q.bytes, q.msgs = q.blocks[:0], 0, 0
	return lost
}

// trim keeps at most n free blocks.
func (q *frameQueue) trim(n int) {
	if len(q.free) > n {
		clear(q.free[n:])
		q.free = q.free[:n]
	}
}
