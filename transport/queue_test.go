package transport

import (
	"bufio"
	"bytes"
	"testing"
	"time"
)

func TestFrameQueueStraddlesBlocks(t *testing.T) {
	var q frameQueue
	payloads := [][]byte{
		bytes.Repeat([]byte{1}, blockSize-1), // header + payload just overflow a block
		nil,
		bytes.Repeat([]byte{2}, 3*blockSize+5),
		[]byte("tail"),
	}
	want := 0
	for _, p := range payloads {
		q.push(p)
		want += messageFrameLen(len(p))
	}
	if q.bytes != want || q.msgs != len(payloads) {
		t.Fatalf("queue holds %d bytes, %d msgs; want %d, %d", q.bytes, q.msgs, want, len(payloads))
	}
	blocks, n, msgs := q.take(nil)
	if n != want || msgs != len(payloads) || q.bytes != 0 || len(q.blocks) != 0 {
		t.Fatalf("take = %d bytes, %d msgs, leaving %d", n, msgs, q.bytes)
	}
	if len(blocks) != (want+blockSize-1)/blockSize {
		t.Fatalf("%d bytes in %d blocks, want them packed", want, len(blocks))
	}
	r := bufio.NewReader(bytes.NewReader(bytes.Join(blocks, nil)))
	for i, p := range payloads {
		got, err := readFrame(r, 1<<30)
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("frame %d: %d bytes, %v; want %d bytes", i, len(got), err, len(p))
		}
	}

	q.recycle(blocks)
	if len(q.free) != len(blocks) || blocks[0] != nil {
		t.Fatalf("recycle kept %d of %d blocks or left references", len(q.free), len(blocks))
	}
	q.push([]byte("again"))
	if len(q.free) != len(blocks)-1 {
		t.Fatal("push did not reuse a free block")
	}
	if lost := q.discard(); lost != 1 || q.bytes != 0 {
		t.Fatalf("discard = %d, leaving %d bytes", lost, q.bytes)
	}
	q.trim(1)
	if len(q.free) != 1 {
		t.Fatalf("trim(1) left %d free blocks", len(q.free))
	}
}

func TestMessagesOfManySizes(t *testing.T) {
	sizes := []int{0, 1, 127, 128, readBufSize - 3, readBufSize, readBufSize + 1, 200_000, 3 << 20, 10}
	dir := newDirectory()
	got := make(chan []byte, len(sizes))
	startNode(t, dir, "b", func(c *Config) {
		c.Handler = func(from string, p []byte) { got <- bytes.Clone(p) }
	})
	a := startNode(t, dir, "a", nil)
	data := streamData(3 << 20)
	for _, n := range sizes {
		if !a.Send("b", data[:n]) {
			t.Fatalf("Send(%d bytes) refused", n)
		}
	}
	for _, n := range sizes {
		select {
		case p := <-got:
			if !bytes.Equal(p, data[:n]) {
				t.Fatalf("got %d bytes, want the %d-byte message", len(p), n)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("the %d-byte message did not arrive", n)
		}
	}
}
