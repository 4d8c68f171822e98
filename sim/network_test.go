package sim

import (
	"slices"
	"testing"
)

func drainAll(n *Network[int], until int64) []Packet[int] {
	var out []Packet[int]
	for now := int64(0); now <= until; now++ {
		out = append(out, n.Due(now)...)
	}
	return out
}

// TestNetworkFIFO checks that random delays never reorder a link, while
// they do interleave different links.
func TestNetworkFIFO(t *testing.T) {
	n := NewNetwork[int](NewRand(1), NetworkOptions{MinDelay: 1, MaxDelay: 20})
	for i := range 200 {
		n.Send(int64(i/10), "a", "b", i)
		n.Send(int64(i/10), "c", "b", 1000+i)
	}
	got := drainAll(n, 1000)
	if len(got) != 400 || n.InFlight() != 0 {
		t.Fatalf("delivered %d of 400, %d in flight", len(got), n.InFlight())
	}
	var ab, cb []int
	interleaved := false
	for i, p := range got {
		if p.From == "a" {
			ab = append(ab, p.Msg)
		} else {
			cb = append(cb, p.Msg)
		}
		if i > 0 && got[i-1].From != p.From {
			interleaved = true
		}
		if i > 0 && p.At < got[i-1].At {
			t.Fatalf("packet due at %d delivered after one due at %d", p.At, got[i-1].At)
		}
	}
	if !slices.IsSorted(ab) || !slices.IsSorted(cb) || !interleaved {
		t.Fatalf("links reordered or never interleaved: %v %v", ab, cb)
	}
}

func TestNetworkResetAndCut(t *testing.T) {
	n := NewNetwork[int](NewRand(2), NetworkOptions{MinDelay: 5, MaxDelay: 5})
	n.Send(0, "a", "b", 1)
	n.Send(0, "b", "a", 2)
	n.Send(0, "a", "c", 3)
	if lost := n.Reset("b", "a"); lost != 2 {
		t.Fatalf("reset lost %d messages, want 2 (both directions)", lost)
	}
	n.Cut("a", "c")
	if n.Send(1, "a", "c", 4) || n.Send(1, "c", "a", 5) || !n.IsCut("c", "a") {
		t.Fatal("a cut link carried a message")
	}
	n.Heal("c", "a")
	if !n.Send(2, "a", "c", 6) {
		t.Fatal("a healed link lost a message")
	}
	got := drainAll(n, 100)
	if len(got) != 1 || got[0].Msg != 6 {
		t.Fatalf("delivered %+v, want only message 6", got)
	}
	n.Send(3, "a", "b", 7)
	n.Send(3, "c", "b", 8)
	n.Send(3, "b", "c", 9)
	if n.DropTo("b") != 2 || n.InFlight() != 1 {
		t.Fatalf("DropTo left %d in flight, want 1", n.InFlight())
	}
	n.Partition([]string{"a"}, []string{"b", "c"})
	if !n.IsCut("b", "a") || !n.IsCut("a", "c") || n.IsCut("b", "c") {
		t.Fatal("Partition cut the wrong links")
	}
	n.HealAll()
	if n.IsCut("a", "b") {
		t.Fatal("HealAll left a cut")
	}
	if sent, lost := n.Stats(); sent != 9 || lost != 7 {
		t.Fatalf("stats sent %d lost %d, want 9 and 7", sent, lost)
	}
}

// TestNetworkDeterministic checks that one seed gives one order.
func TestNetworkDeterministic(t *testing.T) {
	run := func() []Packet[int] {
		n := NewNetwork[int](NewRand(3), NetworkOptions{MinDelay: 0, MaxDelay: 9})
		for i := range 100 {
			n.Send(int64(i), []string{"a", "b", "c"}[i%3], []string{"b", "c", "a"}[i%2], i)
		}
		return drainAll(n, 200)
	}
	if a, b := run(), run(); !slices.Equal(a, b) {
		t.Fatal("the same seed delivered in different orders")
	}
}
