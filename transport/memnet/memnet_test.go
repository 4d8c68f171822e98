package memnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is a Handler that keeps what it was given.
type recorder struct {
	mu     sync.Mutex
	got    []string
	bursts int
	serve  func(w io.Writer) error
}

func (r *recorder) Deliver(from string, p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, from+":"+string(p))
}

func (r *recorder) BurstDone(string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bursts++
}

func (r *recorder) ServeSnapshot(_ context.Context, from string, req []byte, w io.Writer) error {
	if r.serve != nil {
		return r.serve(w)
	}
	_, err := fmt.Fprintf(w, "snapshot for %s of %s", from, req)
	return err
}

func (r *recorder) snapshot() ([]string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...), r.bursts
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLinkIsFIFOAndCopies checks that one link delivers in send order,
// ends every burst with BurstDone, and owns its copy of the payload (the
// replica reuses its send buffer).
func TestLinkIsFIFOAndCopies(t *testing.T) {
	n := New(0)
	defer n.Close()
	var b recorder
	a := n.Add("a", &recorder{})
	n.Add("b", &b)
	buf := make([]byte, 0, 8)
	const count = 1000
	for i := range count {
		buf = strconv.AppendInt(buf[:0], int64(i), 10)
		if !a.Send("b", buf) {
			t.Fatalf("send %d dropped on a healthy link", i)
		}
	}
	waitFor(t, "every message", func() bool { got, _ := b.snapshot(); return len(got) == count })
	got, bursts := b.snapshot()
	for i, m := range got {
		if want := "a:" + strconv.Itoa(i); m != want {
			t.Fatalf("message %d is %q, want %q", i, m, want)
		}
	}
	if bursts == 0 || bursts > count {
		t.Fatalf("%d bursts for %d messages", bursts, count)
	}
	if st := n.Stats(); st.Delivered != count || st.Dropped != 0 {
		t.Fatalf("stats %+v, want %d delivered and none dropped", st, count)
	}
}

// TestCutDropsUntilHeal checks that a cut link and an isolated node drop
// messages both ways, and that healing restores delivery.
func TestCutDropsUntilHeal(t *testing.T) {
	n := New(0)
	defer n.Close()
	var ra, rb recorder
	a, b := n.Add("a", &ra), n.Add("b", &rb)
	n.Cut("a", "b")
	if a.Send("b", []byte("x")) || b.Send("a", []byte("y")) {
		t.Fatal("a cut link queued a message")
	}
	n.Heal("a", "b")
	n.Isolate("b")
	if a.Send("b", []byte("x")) {
		t.Fatal("a message to an isolated node was queued")
	}
	n.Rejoin("b")
	if !a.Send("b", []byte("z")) {
		t.Fatal("a healed link dropped a message")
	}
	waitFor(t, "delivery after heal", func() bool { got, _ := rb.snapshot(); return len(got) == 1 })
	if got, _ := rb.snapshot(); got[0] != "a:z" {
		t.Fatalf("got %q, want only the message sent after healing", got)
	}
	if a.Send("nobody", []byte("x")) {
		t.Fatal("a message to an unknown node was queued")
	}
	if st := n.Stats(); st.Dropped != 4 {
		t.Fatalf("dropped %d, want 4", st.Dropped)
	}
}

// TestStream checks a snapshot stream end to end, its refusal across a
// cut, and that a cut breaks a stream in progress.
func TestStream(t *testing.T) {
	n := New(0)
	defer n.Close()
	block := make(chan struct{})
	server := &recorder{}
	a := n.Add("a", &recorder{})
	n.Add("b", server)
	rc, err := a.OpenStream(context.Background(), "b", []byte("req"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	_ = rc.Close()
	if err != nil || string(got) != "snapshot for a of req" {
		t.Fatalf("stream gave %q, %v", got, err)
	}
	n.Cut("a", "b")
	if _, err := a.OpenStream(context.Background(), "b", nil); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("stream across a cut: %v, want ErrUnreachable", err)
	}
	n.Heal("a", "b")
	server.serve = func(w io.Writer) error {
		if _, err := w.Write([]byte("part")); err != nil {
			return err
		}
		<-block
		_, err := w.Write(bytes.Repeat([]byte("x"), 10))
		return err
	}
	rc, err = a.OpenStream(context.Background(), "b", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	head := make([]byte, 4)
	if _, err := io.ReadFull(rc, head); err != nil {
		t.Fatal(err)
	}
	n.Cut("a", "b")
	close(block)
	if _, err := io.ReadAll(rc); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("stream cut in progress: %v, want ErrUnreachable", err)
	}
}

// TestAddAgainReplacesHandler checks that a node added again (a
// restarted process) receives what is sent afterwards, and its old
// handler nothing more.
func TestAddAgainReplacesHandler(t *testing.T) {
	n := New(0)
	defer n.Close()
	var old, restarted recorder
	a := n.Add("a", &recorder{})
	n.Add("b", &old)
	a.Send("b", []byte("1"))
	waitFor(t, "delivery to the first handler", func() bool { got, _ := old.snapshot(); return len(got) == 1 })
	n.Add("b", &restarted)
	a.Send("b", []byte("2"))
	waitFor(t, "delivery to the new handler", func() bool { got, _ := restarted.snapshot(); return len(got) == 1 })
	if got, _ := old.snapshot(); len(got) != 1 {
		t.Fatalf("the replaced handler got %q", got)
	}
}
