package sim

import "testing"

// TestKVStoreApply checks that entries change the state in seq order,
// that two stores with the same history have the same digests, and that
// a bad entry is refused.
func TestKVStoreApply(t *testing.T) {
	a, b := NewKVStore(), NewKVStore()
	for _, s := range []*KVStore{&a, &b} {
		for i, e := range [][]byte{KVEntry(KVPut, "k", "x"), KVEntry(KVAppend, "k", "y"), KVEntry(KVPut, "j", "")} {
			if err := s.Apply(uint64(i+1), e); err != nil {
				t.Fatal(err)
			}
		}
	}
	if a.KV["k"] != "xy" || a.Applied != 3 || len(a.Digest) != 4 {
		t.Fatalf("state %q applied %d digests %d", a.KV, a.Applied, len(a.Digest))
	}
	if a.Prefix[3] != b.Prefix[3] || a.Digest[2] != EntryDigest(KVEntry(KVAppend, "k", "y")) {
		t.Fatalf("the same history gives digests %x and %x", a.Prefix[3], b.Prefix[3])
	}
	if err := b.Apply(4, KVEntry(KVAppend, "j", "z")); err != nil || b.Prefix[4] == a.Prefix[3] {
		t.Fatalf("a longer history: %v, prefix digest %x", err, b.Prefix[4])
	}
	for name, bad := range map[string]struct {
		seq  uint64
		data []byte
	}{
		"gap":     {5, KVEntry(KVPut, "k", "v")},
		"corrupt": {4, []byte{byte(KVPut), 'k'}},
		"get":     {4, KVEntry(KVGet, "k", "")},
	} {
		if err := a.Apply(bad.seq, bad.data); err == nil {
			t.Errorf("%s: applied", name)
		}
	}
	if a.Applied != 3 {
		t.Fatalf("refused entries moved the store to %d", a.Applied)
	}
}

// TestKVStoreSnapshot checks that a snapshot keeps the state it was taken
// at, and that restoring it goes back to that state.
func TestKVStoreSnapshot(t *testing.T) {
	s := NewKVStore()
	_ = s.Apply(1, KVEntry(KVPut, "k", "x"))
	snap := s.Snapshot()
	_ = s.Apply(2, KVEntry(KVAppend, "k", "y"))
	want := s.Prefix[1]
	r := NewKVStore()
	r.Restore(snap)
	if r.Applied != 1 || r.KV["k"] != "x" || r.Prefix[1] != want || len(r.Digest) != 2 {
		t.Fatalf("restored applied %d, %q", r.Applied, r.KV)
	}
	if err := r.Apply(2, KVEntry(KVAppend, "k", "z")); err != nil || r.KV["k"] != "xz" {
		t.Fatalf("applying after a restore: %v, %q", err, r.KV)
	}
	if s.KV["k"] != "xy" {
		t.Fatalf("the source changed to %q", s.KV)
	}
}

func TestKVOpString(t *testing.T) {
	for op, want := range map[KVOp]string{KVGet: "get", KVPut: "put", KVAppend: "append", 9: "KVOp(9)"} {
		if got := op.String(); got != want {
			t.Errorf("%d: %q, want %q", uint8(op), got, want)
		}
	}
}
