package storage

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/vfs"
)

// Tests of the metadata namespace. The first four run in the conformance
// suite, against every Store.

func setMeta(k, v string) Op {
	return Op{Kind: OpSetMeta, Key: []byte(k), Entry: Entry{Value: []byte(v)}}
}

func delMeta(k string) Op { return Op{Kind: OpDeleteMeta, Key: []byte(k)} }

func clearMetaOp() Op { return Op{Kind: OpClearMeta} }

// metaOf copies what ScanMeta yields for prefix, as "key=value" strings.
func metaOf(t testing.TB, s Store, prefix string) []string {
	t.Helper()
	var out []string
	err := s.ScanMeta([]byte(prefix), func(k, v []byte) bool {
		out = append(out, string(k)+"="+string(v))
		return true
	})
	if err != nil {
		t.Fatalf("ScanMeta %q: %v", prefix, err)
	}
	return out
}

func wantMeta(t testing.TB, s Store, prefix string, want ...string) {
	t.Helper()
	if got := metaOf(t, s, prefix); !slices.Equal(got, want) {
		t.Fatalf("ScanMeta %q = %q, want %q", prefix, got, want)
	}
}

// testMeta: metadata keys live beside user keys of the same name without
// touching them, and no user-key read, Stats, View or OpClear sees them.
func testMeta(t *testing.T, s Store) {
	apply(t, s, 1, set("a", "user"), setMeta("b", "2"), setMeta("a", "meta"))
	wantGet(t, s, "a", ent("user", 0))
	wantGet(t, s, "b", nil)
	wantStats(t, s.Stats(), Stats{Keys: 1})
	if got := keysOf(scanAll(t, s, nil, -1)); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("Scan = %q, want only the user key", got)
	}
	wantMeta(t, s, "", "a=meta", "b=2")

	v, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if got := keysOf(scanAll(t, v, nil, -1)); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("view Scan = %q, want only the user key", got)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}

	apply(t, s, 2, clearOp(), setMeta("c", "3"), delMeta("b"), delMeta("missing"))
	wantStats(t, s.Stats(), Stats{})
	wantGet(t, s, "a", nil)
	wantMeta(t, s, "", "a=meta", "c=3")

	apply(t, s, 3, set("k", "v"), clearMetaOp())
	wantMeta(t, s, "")
	wantGet(t, s, "k", ent("v", 0))
	wantStats(t, s.Stats(), Stats{Keys: 1})
	apply(t, s, 4, clearMetaOp(), setMeta("after", "clear"))
	wantMeta(t, s, "", "after=clear")
}

// testMetaPrefix: ScanMeta stops at the prefix's end, binary prefixes
// included, and when fn says so.
func testMetaPrefix(t *testing.T, s Store) {
	keys := []string{"d/a", "d/b", "d\xff", "d\xff\xff", "d\xff\xff\x00", "e", "", "\xff\xff"}
	ops := make([]Op, 0, len(keys))
	for _, k := range keys {
		ops = append(ops, setMeta(k, "v"))
	}
	apply(t, s, 1, ops...)
	wantMeta(t, s, "d/", "d/a=v", "d/b=v")
	wantMeta(t, s, "d\xff\xff", "d\xff\xff=v", "d\xff\xff\x00=v")
	wantMeta(t, s, "\xff", "\xff\xff=v")
	wantMeta(t, s, "x")
	if got := metaOf(t, s, ""); len(got) != len(keys) || got[0] != "=v" {
		t.Fatalf("ScanMeta of everything = %q", got)
	}
	n := 0
	if err := s.ScanMeta([]byte("d"), func(_, _ []byte) bool { n++; return n < 2 }); err != nil || n != 2 {
		t.Fatalf("ScanMeta stopped after %d keys (%v), want 2", n, err)
	}
}

// testMetaAtomic: a rejected batch changes no metadata.
func testMetaAtomic(t *testing.T, s Store) {
	apply(t, s, 1, set("a", "1"), setMeta("m", "1"))
	err := s.Apply(&Batch{Seq: 2, Ops: []Op{setMeta("m", "2"), set("a", "2"), {Kind: 0}}})
	if !errors.Is(err, ErrBadOp) {
		t.Fatalf("Apply with kind 0 = %v, want ErrBadOp", err)
	}
	err = s.Apply(&Batch{Seq: 1, Ops: []Op{setMeta("m", "2"), clearMetaOp()}})
	if !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("Apply seq 1 again = %v, want ErrOutOfOrder", err)
	}
	wantMeta(t, s, "", "m=1")
	wantGet(t, s, "a", ent("1", 0))
}

// testMetaReplace: a Replace batch installs metadata after its clear; one
// without OpClearMeta leaves the old metadata as it was.
func testMetaReplace(t *testing.T, s Store) {
	apply(t, s, 5, set("a", "1"), setMeta("old", "1"), setMeta("keep", "1"))
	b := &Batch{Seq: 2, Replace: true, Ops: []Op{clearOp(), clearMetaOp(), setMeta("new", "2"), set("x", "2")}}
	if err := s.Apply(b); err != nil {
		t.Fatalf("replace with meta: %v", err)
	}
	wantMeta(t, s, "", "new=2")
	wantGet(t, s, "a", nil)
	wantGet(t, s, "x", ent("2", 0))
	wantStats(t, s.Stats(), Stats{Keys: 1})
	if err := s.Apply(&Batch{Seq: 3, Replace: true, Ops: []Op{clearOp(), set("y", "3")}}); err != nil {
		t.Fatalf("replace without meta: %v", err)
	}
	wantMeta(t, s, "", "new=2")
	if err := s.Apply(&Batch{Seq: 4, Replace: true, Ops: []Op{clearMetaOp(), set("z", "4")}}); !errors.Is(err, ErrBadOp) {
		t.Fatalf("replace starting with a meta clear = %v, want ErrBadOp", err)
	}
}

func TestPebbleMetaReopen(t *testing.T) {
	dir := t.TempDir()
	p := openPebble(t, dir, PebbleOptions{ClusterID: "c"})
	apply(t, p, 1, set("a", "1"), setMeta("m1", "one"), setMeta("m2", "two"))
	apply(t, p, 2, delMeta("m1"), setMeta("m3", "three"))
	closePebble(t, p)
	p = openPebble(t, dir, PebbleOptions{ClusterID: "c"})
	wantMeta(t, p, "", "m2=two", "m3=three")
	wantStats(t, p.Stats(), Stats{Keys: 1})
	// OpClearMeta's range deletion spares the state and cluster records.
	apply(t, p, 3, clearMetaOp())
	closePebble(t, p)
	p = openPebble(t, dir, PebbleOptions{ClusterID: "c"})
	defer closePebble(t, p)
	wantMeta(t, p, "")
	if p.AppliedSeq() != 3 || p.ClusterID() != "c" {
		t.Fatalf("after a meta clear and reopen: seq %d, cluster %q", p.AppliedSeq(), p.ClusterID())
	}
	wantGet(t, p, "a", ent("1", 0))
}

// TestPebbleMetaCrash: metadata written in a batch survives a crash exactly
// when the batch's user ops and seq do.
func TestPebbleMetaCrash(t *testing.T) {
	fs := vfs.NewStrictMem()
	p := openPebble(t, "db", PebbleOptions{FS: fs})
	for seq := uint64(1); seq <= 20; seq++ {
		if seq == 11 {
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
		}
		apply(t, p, seq, set("last", fmt.Sprint(seq)), setMeta("last", fmt.Sprint(seq)))
	}
	crash(t, fs, p)
	p = openPebble(t, "db", PebbleOptions{FS: fs})
	defer closePebble(t, p)
	if p.AppliedSeq() != 10 {
		t.Fatalf("AppliedSeq after crash = %d, want 10", p.AppliedSeq())
	}
	wantGet(t, p, "last", ent("10", 0))
	wantMeta(t, p, "", "last=10")
}

// TestMemoryCloneCarriesMeta: a clone, the simulation's disk, holds the
// metadata, and later changes to either side do not reach the other.
func TestMemoryCloneCarriesMeta(t *testing.T) {
	m := NewMemory()
	apply(t, m, 1, set("a", "1"), setMeta("m", "1"))
	c := m.Clone()
	apply(t, m, 2, setMeta("m", "2"), setMeta("n", "2"))
	wantMeta(t, c, "", "m=1")
	apply(t, c, 2, clearMetaOp())
	wantMeta(t, m, "", "m=2", "n=2")
	wantMeta(t, c, "")
}
