package dedup

import (
	"bytes"
	"testing"
)

// TestDeltaCarriesTable: a backup that installs only deltas recognizes a
// retried request as the primary would, and holds the same state; a
// client evicted on the primary is forgotten by the backup too.
func TestDeltaCarriesTable(t *testing.T) {
	p, b := newMachine(t, 2), newMachine(t, 2)
	p.TrackChanges(true)
	seq := uint64(0)
	do := func(client string, num uint64, cmd ...string) {
		seq++
		u, err := p.PrepareTagged(client, num, args(cmd...), env{})
		if err != nil {
			t.Fatal(err)
		}
		apply(t, p, seq, u)
	}
	do("c1", 1, "INCR", "n")
	do("c1", 2, "INCR", "n")
	do("c2", 1, "SET", "k", "v")
	if p.DirtyBytes() == 0 {
		t.Fatal("tracked writes left no dirty bytes")
	}
	d, err := p.TakeDelta()
	if err != nil {
		t.Fatal(err)
	}
	apply(t, b, seq, d)
	reply, at, dup, err := b.Duplicate("c1", 2)
	if !dup || err != nil || string(reply) != ":2\r\n" || at != 2 {
		t.Fatalf("backup's record of c1/2: %q at %d dup=%v err=%v", reply, at, dup, err)
	}
	do("c3", 1, "SET", "k", "w") // evicts c1 (max 2 clients)
	d, err = p.TakeDelta()
	if err != nil {
		t.Fatal(err)
	}
	apply(t, b, seq, d)
	if _, _, dup, _ := b.Duplicate("c1", 2); dup {
		t.Fatal("backup still knows c1, which the primary evicted")
	}
	var ps, bs bytes.Buffer
	for m, buf := range map[*Machine]*bytes.Buffer{p: &ps, b: &bs} {
		snap, err := m.OpenSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		if err := snap.Write(buf); err != nil {
			t.Fatal(err)
		}
		snap.Close()
	}
	if !bytes.Equal(ps.Bytes(), bs.Bytes()) {
		t.Fatal("backup's snapshot differs from the primary's")
	}
}
