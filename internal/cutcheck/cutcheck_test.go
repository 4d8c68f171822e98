package cutcheck

import (
	"errors"
	"strconv"
	"testing"
)

// state is what writer w's keys hold after writes 0..last.
func state(w *Writer, last int) map[string]string {
	data := map[string]string{}
	for i := 0; i <= last; i++ {
		data[Key(w.ID, i%w.Keys)] = strconv.Itoa(i)
	}
	return data
}

func TestCheck(t *testing.T) {
	w := NewWriter(1, 4)
	for _, last := range []int{-1, 0, 2, 3, 9} {
		if got, err := w.Check(state(w, last), int64(last), int64(last)); err != nil || got != int64(last) {
			t.Fatalf("writes 0..%d: %d, %v", last, got, err)
		}
	}
	mixed := state(w, 9)
	mixed[Key(1, 0)] = "4" // an older value beside newer ones: two moments
	if _, err := w.Check(mixed, 0, 9); !errors.Is(err, ErrNotACut) {
		t.Fatalf("a mixed copy: %v", err)
	}
	if _, err := w.Check(state(w, 5), 6, 9); !errors.Is(err, ErrNotACut) {
		t.Fatal("an acknowledged write missing was accepted")
	}
	if _, err := w.Check(state(w, 9), 0, 8); !errors.Is(err, ErrNotACut) {
		t.Fatal("a write started after the copy was accepted")
	}
}
