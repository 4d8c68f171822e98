package kv

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/lockstep/lockstep/storage"
)

// metaStores runs fn against both stores.
func metaStores(t *testing.T, fn func(t *testing.T, s storage.Store)) {
	t.Run("memory", func(t *testing.T) { fn(t, memStore(t)) })
	t.Run("pebble", func(t *testing.T) {
		s, err := storage.OpenPebble(t.TempDir(), storage.PebbleOptions{CacheSize: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		fn(t, s)
	})
}

// metaOf lists a store's metadata as "key=value" strings.
func metaOf(t *testing.T, s storage.Store) []string {
	t.Helper()
	var out []string
	if err := s.ScanMeta(nil, func(k, v []byte) bool {
		out = append(out, string(k)+"="+string(v))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func setMeta(k, v string) storage.Op {
	return storage.Op{Kind: storage.OpSetMeta, Key: []byte(k), Entry: storage.Entry{Value: []byte(v)}}
}

// TestApplyWithMeta: the hook sees the update's reply, its ops land with
// the update's in one batch, and they are not user keys: no read, no delta
// and no snapshot of the machine shows them.
func TestApplyWithMeta(t *testing.T) {
	metaStores(t, func(t *testing.T, s storage.Store) {
		m := New(s, Options{})
		m.TrackChanges(true)
		env := &fakeEnv{now: baseTime}
		u, err := m.Prepare(toArgs([]string{"INCR", "n"}), env)
		if err != nil {
			t.Fatal(err)
		}
		var seen []byte
		out, err := m.ApplyWithMeta(1, u, nil, func(reply []byte) []storage.Op {
			seen = bytes.Clone(reply)
			return []storage.Op{setMeta("n", "record of "+string(reply[:2]))}
		})
		if err != nil || string(out) != rInt(1) || string(seen) != rInt(1) {
			t.Fatalf("ApplyWithMeta = %q, %v; hook saw %q", out, err, seen)
		}
		if got := metaOf(t, s); !slices.Equal(got, []string{"n=record of :1"}) {
			t.Fatalf("metadata = %q", got)
		}
		if e, ok, _ := s.Get([]byte("n")); !ok || string(e.Value) != "1" || s.AppliedSeq() != 1 {
			t.Fatalf("user key n = %q (%v) at seq %d", e.Value, ok, s.AppliedSeq())
		}
		if st := s.Stats(); st.Keys != 1 {
			t.Fatalf("Stats = %+v, want the user key only", st)
		}
		if m.DirtyBytes() != len("n")+len("1")+8 {
			t.Fatalf("DirtyBytes = %d counts the metadata", m.DirtyBytes())
		}
		d, err := m.TakeDelta()
		if err != nil {
			t.Fatal(err)
		}
		_, n, _, err := decodeHeader(d)
		if err != nil || n != 1 {
			t.Fatalf("delta holds %d ops (%v), want the user key only", n, err)
		}
	})
}

// TestApplyWithMetaRejectsUserOps: a hook cannot write user keys, and the
// rejected update changes nothing.
func TestApplyWithMetaRejectsUserOps(t *testing.T) {
	s := memStore(t)
	m := New(s, Options{})
	u, err := m.Prepare(toArgs([]string{"SET", "k", "v"}), &fakeEnv{now: baseTime})
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.ApplyWithMeta(1, u, nil, func([]byte) []storage.Op {
		return []storage.Op{setMeta("m", "1"), {Kind: storage.OpSet, Key: []byte("x")}}
	})
	if !errors.Is(err, storage.ErrBadOp) {
		t.Fatalf("hook returning OpSet: %v, want ErrBadOp", err)
	}
	if s.AppliedSeq() != 0 || s.Stats().Keys != 0 || len(metaOf(t, s)) != 0 {
		t.Fatal("a rejected update changed the store")
	}
	if err := m.RestoreWithMeta(bytes.NewReader(nil), []storage.Op{{Kind: storage.OpClear}}); !errors.Is(err, storage.ErrBadOp) {
		t.Fatalf("restore with a user op: %v, want ErrBadOp", err)
	}
}

// TestRestoreWithMeta: a restore's metadata ops go in its Replace batch,
// which replaces the old metadata; an empty snapshot onto a fresh store
// still changes nothing unless it brings metadata.
func TestRestoreWithMeta(t *testing.T) {
	metaStores(t, func(t *testing.T, s storage.Store) {
		src := newHarness(t, memStore)
		src.do("SET", "a", "1")
		snap := src.snapshot()

		m := New(s, Options{})
		empty := newHarness(t, memStore).snapshot()
		clearMeta := []storage.Op{{Kind: storage.OpClearMeta}}
		if err := m.RestoreWithMeta(bytes.NewReader(empty), clearMeta); err != nil {
			t.Fatal(err)
		}
		if s.AppliedSeq() != 0 || len(metaOf(t, s)) != 0 {
			t.Fatal("an empty snapshot changed a fresh store")
		}
		if err := m.RestoreWithMeta(bytes.NewReader(empty), []storage.Op{setMeta("z", "0")}); err != nil {
			t.Fatal(err)
		}
		if got := metaOf(t, s); !slices.Equal(got, []string{"z=0"}) {
			t.Fatalf("metadata after an empty snapshot with a record = %q", got)
		}
		if _, err := m.ApplyWithMeta(7, mustUpdate(t, m, "SET", "b", "2"), nil, func([]byte) []storage.Op {
			return []storage.Op{setMeta("old", "7")}
		}); err != nil {
			t.Fatal(err)
		}
		if err := m.RestoreWithMeta(bytes.NewReader(snap), append(clearMeta, setMeta("new", "1"))); err != nil {
			t.Fatal(err)
		}
		if got := metaOf(t, s); !slices.Equal(got, []string{"new=1"}) {
			t.Fatalf("metadata after restore = %q, want the restored records only", got)
		}
		if _, ok, _ := s.Get([]byte("b")); ok || s.AppliedSeq() != 1 {
			t.Fatalf("restore left seq %d, b present %v", s.AppliedSeq(), ok)
		}
	})
}

func mustUpdate(t *testing.T, m *Machine, args ...string) []byte {
	t.Helper()
	u, err := m.Prepare(toArgs(args), &fakeEnv{now: baseTime})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestApplyWithMetaAllocations: the hook costs no allocation of kv's own
// beyond what plain Apply makes (the ops array is reused).
func TestApplyWithMetaAllocations(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation counts are not meaningful under -race or -short")
	}
	m := New(storage.NewMemory(), Options{})
	env := &fakeEnv{now: baseTime}
	set := toArgs([]string{"SET", "key", "value"})
	ops := []storage.Op{setMeta("m", "v")}
	hook := func([]byte) []storage.Op { return ops }
	out := make([]byte, 0, 64)
	seq := uint64(0)
	run := func(meta func([]byte) []storage.Op) float64 {
		return testing.AllocsPerRun(200, func() {
			u, err := m.Prepare(set, env)
			if err != nil {
				t.Fatal(err)
			}
			seq++
			if out, err = m.ApplyWithMeta(seq, u, out[:0], meta); err != nil {
				t.Fatal(err)
			}
		})
	}
	plain, with := run(nil), run(hook)
	if with > plain {
		t.Errorf("ApplyWithMeta: %.1f allocations, plain Apply %.1f", with, plain)
	}
}
