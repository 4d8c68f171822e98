package backup

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fakeNode serves one canned reply to every connection.
func fakeNode(t *testing.T, reply []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				if _, err := c.Read(buf); err != nil {
					return
				}
				_, _ = c.Write(reply)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestTakeWritesFile(t *testing.T) {
	recs := manyRecords(500)
	addr := fakeNode(t, encodeStream(t, StreamHeader{Seq: 77, Keys: 500, Cluster: "c", Group: "g", Protocol: "chain"}, recs))
	out := filepath.Join(t.TempDir(), "b.lsbackup")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := Take(ctx, TakeOptions{Addr: addr, Out: out})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := ReadAll(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h != res.Header || h.Seq != 77 || h.Keys != 500 || h.Cluster != "c" || h.Protocol != "chain" {
		t.Fatalf("file header %+v, Take said %+v", h, res.Header)
	}
	if st, _ := f.Stat(); st.Size() != res.Size {
		t.Fatalf("file of %d bytes, Take said %d", st.Size(), res.Size)
	}
}

// TestTakeLeavesNoPartialFile: a stream cut short fails the backup, and
// leaves the previous file under the name untouched and no temporary
// file behind.
func TestTakeLeavesNoPartialFile(t *testing.T) {
	b := encodeStream(t, StreamHeader{Seq: 77, Keys: 500}, manyRecords(500))
	for _, cut := range []int{len(b) * 2 / 3, bytes.LastIndex(b, []byte("*3\r\n$3\r\nend"))} {
		t.Run("", func(t *testing.T) { takeCut(t, b[:cut]) })
	}
}

func takeCut(t *testing.T, stream []byte) {
	addr := fakeNode(t, stream)
	dir := t.TempDir()
	out := filepath.Join(dir, "b.lsbackup")
	if err := os.WriteFile(out, []byte("the previous backup"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Take(ctx, TakeOptions{Addr: addr, Out: out}); !errors.Is(err, ErrStream) {
		t.Fatalf("a cut stream: %v, want ErrStream", err)
	}
	if got, _ := os.ReadFile(out); string(got) != "the previous backup" {
		t.Fatalf("the file under the name is now %.40q", got)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("%d files left in the directory, want only the previous backup", len(ents))
	}
}
