package transport

import (
	"encoding/binary"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkSmallMessages measures one-way throughput of 100-byte messages
// between two transports over loopback, from the first Send to the last
// delivery. A Send refused for a full queue is retried, as a protocol's flow
// control would.
func BenchmarkSmallMessages(b *testing.B) {
	benchmarkMessages(b, 100, 1)
}

// BenchmarkSmallMessages4Senders is the same with four goroutines sending
// to one peer, as when several groups share a link.
func BenchmarkSmallMessages4Senders(b *testing.B) {
	benchmarkMessages(b, 100, 4)
}

func benchmarkMessages(b *testing.B, size, senders int) {
	dir := newDirectory()
	var got atomic.Int64
	done := make(chan struct{})
	perSender := int64(max(b.N/senders, 1))
	want := perSender * int64(senders)
	startNode(b, dir, "b", func(c *Config) {
		c.Handler = func(from string, p []byte) {
			if got.Add(1) == want {
				close(done)
			}
		}
	})
	a := startNode(b, dir, "a", nil)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range senders {
		go func() {
			payload := make([]byte, size)
			for i := range perSender {
				binary.BigEndian.PutUint64(payload, uint64(i))
				for !a.Send("b", payload) {
					runtime.Gosched()
				}
			}
		}()
	}
	<-done
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(want)/elapsed.Seconds(), "msgs/s")
	st := a.Stats()
	b.ReportMetric(float64(st.MsgsSent)/float64(max(st.Writes, 1)), "msgs/write")
}
