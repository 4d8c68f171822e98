package sim

import (
	"strings"
	"testing"

	"github.com/anishathalye/porcupine"
)

func TestKVLinearizable(t *testing.T) {
	var h History
	put := h.Invoke(0, KVInput{Op: KVPut, Key: "k", Value: "a"})
	app := h.Invoke(1, KVInput{Op: KVAppend, Key: "k", Value: "b"})
	h.Return(put, nil)
	get := h.Invoke(2, KVInput{Op: KVGet, Key: "k"})
	h.Return(get, KVOutput{Value: "ab"}) // the append took effect, concurrently
	h.Return(app, nil)
	other := h.Invoke(0, KVInput{Op: KVGet, Key: "other"})
	h.Return(other, KVOutput{Value: ""})
	if res, _ := CheckKV(&h, 0); res != porcupine.Ok {
		t.Fatalf("a linearizable history checks %v", res)
	}
}

func TestKVStaleRead(t *testing.T) {
	var h History
	put := h.Invoke(0, KVInput{Op: KVPut, Key: "k", Value: "new"})
	h.Return(put, nil)
	get := h.Invoke(1, KVInput{Op: KVGet, Key: "k"})
	h.Return(get, KVOutput{Value: ""})
	res, info := CheckKV(&h, 0)
	if res != porcupine.Illegal {
		t.Fatalf("a stale read checks %v", res)
	}
	var b strings.Builder
	if err := porcupine.Visualize(KVModel(), info, &b); err != nil || b.Len() == 0 {
		t.Fatalf("visualize: %v", err)
	}
}

// TestKVPending checks that a write that never returned may or may not
// have happened, but cannot have happened before it was called.
func TestKVPending(t *testing.T) {
	for _, seen := range []string{"", "x"} {
		var h History
		h.Invoke(0, KVInput{Op: KVPut, Key: "k", Value: "x"}) // never returns
		get := h.Invoke(1, KVInput{Op: KVGet, Key: "k"})
		h.Return(get, KVOutput{Value: seen})
		if res, _ := CheckKV(&h, 0); res != porcupine.Ok || h.Pending() != 1 || h.Done(0) {
			t.Fatalf("read %q after a pending write: %v, %d pending", seen, res, h.Pending())
		}
	}
	var h History
	get := h.Invoke(1, KVInput{Op: KVGet, Key: "k"})
	h.Return(get, KVOutput{Value: "x"})
	h.Invoke(0, KVInput{Op: KVPut, Key: "k", Value: "x"})
	if res, _ := CheckKV(&h, 0); res != porcupine.Illegal {
		t.Fatalf("a read of a write called later checks %v", res)
	}
}

// TestKVForget checks that a forgotten write cannot explain a read.
func TestKVForget(t *testing.T) {
	var h History
	put := h.Invoke(0, KVInput{Op: KVPut, Key: "k", Value: "x"})
	get := h.Invoke(1, KVInput{Op: KVGet, Key: "k"})
	h.Return(get, KVOutput{Value: "x"})
	if res, _ := CheckKV(&h, 0); res != porcupine.Ok {
		t.Fatalf("a read of a pending write checks %v", res)
	}
	h.Forget(put)
	h.Forget(get) // returned: not forgotten
	if res, _ := CheckKV(&h, 0); res != porcupine.Illegal || h.Pending() != 0 || len(h.Operations()) != 1 {
		t.Fatalf("a read of a forgotten write checks %v, %d pending", res, h.Pending())
	}
}

func TestTrace(t *testing.T) {
	var nilTrace *Trace
	nilTrace.Logf("ignored %d", 1)
	if nilTrace.Enabled() || nilTrace.Digest() != 0 {
		t.Fatal("a nil trace recorded something")
	}
	a, b := &Trace{Keep: 2}, &Trace{Keep: 2}
	for i := range 5 {
		a.SetStep(int64(i))
		a.Logf("event %d", i)
		b.SetStep(int64(i))
		b.Logf("event %d", i)
	}
	var out strings.Builder
	a.Dump(&out)
	if a.Digest() != b.Digest() || a.Count() != 5 || strings.Count(out.String(), "\n") != 2 || !strings.Contains(out.String(), "event 4") {
		t.Fatalf("traces differ or dump is wrong: %q", out.String())
	}
	b.Logf("one more")
	if a.Digest() == b.Digest() {
		t.Fatal("different traces have the same digest")
	}
}
