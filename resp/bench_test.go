package resp

import (
	"bytes"
	"strconv"
	"testing"
)

// BenchmarkParse parses a pipelined batch of SET commands, the server's
// hot path.
func BenchmarkParse(b *testing.B) {
	batch := setBatch(1000)
	p := NewParser(DefaultLimits())
	b.SetBytes(int64(len(batch)))
	b.ReportAllocs()
	for b.Loop() {
		for buf := batch; len(buf) > 0; {
			_, n, err := p.Parse(buf)
			if err != nil || n == 0 {
				b.Fatalf("Parse: n=%d err=%v", n, err)
			}
			buf = buf[n:]
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/cmd")
}

// BenchmarkParseInline parses a pipelined batch of inline SET commands.
func BenchmarkParseInline(b *testing.B) {
	var batch []byte
	for i := range 1000 {
		batch = append(batch, "SET key:"+strconv.Itoa(i)+" \"value 0123456789\"\r\n"...)
	}
	p := NewParser(DefaultLimits())
	b.SetBytes(int64(len(batch)))
	b.ReportAllocs()
	for b.Loop() {
		for buf := batch; len(buf) > 0; {
			_, n, err := p.Parse(buf)
			if err != nil || n == 0 {
				b.Fatalf("Parse: n=%d err=%v", n, err)
			}
			buf = buf[n:]
		}
	}
}

// BenchmarkParseBigBulk feeds a 64 MiB bulk string to Parse in 16 KiB
// steps, as a server would see it arrive. Each incomplete call must cost
// O(1), not O(bytes so far).
func BenchmarkParseBigBulk(b *testing.B) {
	const size, step = 64 << 20, 16 << 10
	buf := AppendCommand(nil, []byte("SET"), []byte("k"), make([]byte, size))
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	calls := 0
	for b.Loop() {
		p := NewParser(DefaultLimits())
		for k := step; ; k += step {
			calls++
			args, n, err := p.Parse(buf[:min(k, len(buf))])
			if err != nil {
				b.Fatal(err)
			}
			if n > 0 {
				if n != len(buf) || len(args[2]) != size {
					b.Fatalf("n=%d, want %d", n, len(buf))
				}
				break
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(calls), "ns/call")
}

func BenchmarkAppendCommand(b *testing.B) {
	args := [][]byte{[]byte("SET"), []byte("key:000001"), []byte("value-0123456789")}
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendCommand(buf[:0], args...)
	}
}

func BenchmarkReadValue(b *testing.B) {
	var replies []byte
	for range 1000 {
		replies = AppendOK(replies)
		replies = AppendBulkString(replies, "value-0123456789")
	}
	b.SetBytes(int64(len(replies)))
	b.ReportAllocs()
	for b.Loop() {
		r := NewReader(bytes.NewReader(replies))
		for range 2000 {
			if _, err := r.ReadValue(); err != nil {
				b.Fatal(err)
			}
		}
	}
}
