package sim

import "testing"

// TestWrites checks the oracle: a second entry at a committed seq is a
// conflict, a given-up write is returned when its entry commits (or at
// once if it is committed already) and forgotten by Settle otherwise.
func TestWrites(t *testing.T) {
	var h History
	ws := NewWrites(&h)
	put := func(seq uint64, v string) (OpID, int, uint64) {
		op := h.Invoke(0, KVInput{Op: KVPut, Key: "k", Value: v})
		data := KVEntry(KVPut, "k", v)
		return op, ws.Add(op, seq, data), EntryDigest(data)
	}
	_, a, da := put(1, "a")
	opB, b, db := put(2, "b")
	opC, c, _ := put(3, "c")
	if settled, ok := ws.Commit(1, da); settled || !ok {
		t.Fatalf("first commit at 1: settled %t ok %t", settled, ok)
	}
	if _, ok := ws.Commit(1, da); !ok {
		t.Fatal("the same entry committed again is a conflict")
	}
	if _, ok := ws.Commit(1, db); ok || !ws.Conflicts(1, db) || ws.Conflicts(1, da) || ws.Conflicts(9, db) {
		t.Fatal("another entry at a committed seq is no conflict")
	}
	if !ws.GiveUp(a) {
		t.Fatal("a write committed already stays in doubt")
	}
	if ws.GiveUp(b) || ws.GiveUp(c) || h.Pending() != 2 {
		t.Fatalf("uncommitted writes given up: %d pending, want 2", h.Pending())
	}
	if settled, ok := ws.Commit(2, db); !settled || !ok || !h.Done(opB) {
		t.Fatalf("committing a given-up write: settled %t ok %t done %t", settled, ok, h.Done(opB))
	}
	if ws.MaxCommitted() != 2 {
		t.Fatalf("max committed %d", ws.MaxCommitted())
	}
	if n := ws.Settle(); n != 1 || h.Pending() != 0 || h.Done(opC) || len(h.Operations()) != 2 {
		t.Fatalf("settle forgot %d, %d pending, %d operations left", n, h.Pending(), len(h.Operations()))
	}
}
