package kv

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/lockstep/lockstep/resp"
)

// scanPage decodes one SCAN reply into its cursor and keys.
func scanPage(reply []byte) (string, []string, error) {
	v, err := resp.NewReader(bytes.NewReader(reply)).ReadValue()
	if err != nil {
		return "", nil, err
	}
	if v.Type == '-' {
		return "", nil, fmt.Errorf("error reply %q", v.Str)
	}
	if v.Type != '*' || len(v.Array) != 2 || v.Array[0].Type != '$' || v.Array[1].Type != '*' {
		return "", nil, fmt.Errorf("malformed SCAN reply %q", reply)
	}
	keys := make([]string, len(v.Array[1].Array))
	for i, e := range v.Array[1].Array {
		keys[i] = string(e.Str)
	}
	return string(v.Array[0].Str), keys, nil
}

// scanAll runs a whole SCAN with the given options through read, and fails
// if any key comes back twice.
func scanAll(read func(args [][]byte) ([]byte, error), opts ...string) (map[string]bool, int, error) {
	seen := make(map[string]bool)
	cursor, pages := "0", 0
	for {
		reply, err := read(toArgs(append([]string{"SCAN", cursor}, opts...)))
		if err != nil {
			return nil, pages, err
		}
		next, keys, err := scanPage(reply)
		if err != nil {
			return nil, pages, err
		}
		pages++
		for _, k := range keys {
			if seen[k] {
				return nil, pages, fmt.Errorf("key %q returned twice", k)
			}
			seen[k] = true
		}
		if next == "0" {
			return seen, pages, nil
		}
		if _, err := strconv.ParseUint(next, 10, 64); err != nil {
			return nil, pages, fmt.Errorf("cursor %q is not a uint64", next)
		}
		cursor = next
	}
}

func (h *harness) read(args [][]byte) ([]byte, error) { return h.m.Read(args, h.env.now, nil) }

func testScan(t *testing.T, newStore storeFactory) {
	h := newHarness(t, newStore)
	for i := range 1000 {
		h.do("SET", fmt.Sprintf("key:%04d", i), "v")
	}
	for i := range 100 {
		h.do("SET", fmt.Sprintf("other:%03d", i), "v")
	}
	h.do("SET", "gone", "v", "PX", "5")
	h.env.now += 5

	checks := []struct {
		opts      []string
		want      int
		minPages  int
		wantMatch func(string) bool
	}{
		{nil, 1100, 110, func(string) bool { return true }},
		{[]string{"COUNT", "7"}, 1100, 158, func(string) bool { return true }},
		{[]string{"COUNT", "5000"}, 1100, 1, func(string) bool { return true }},
		{[]string{"MATCH", "key:00[1-3]?", "COUNT", "4"}, 30, 8, func(k string) bool {
			return strings.HasPrefix(k, "key:001") || strings.HasPrefix(k, "key:002") || strings.HasPrefix(k, "key:003")
		}},
		{[]string{"match", "*:09?", "count", "50"}, 10, 23, func(k string) bool { return strings.HasPrefix(k, "other:09") }},
		{[]string{"MATCH", "*", "TYPE", "STRING"}, 1100, 110, func(string) bool { return true }},
		{[]string{"TYPE", "hash"}, 0, 110, nil},
		{[]string{"MATCH", "gone"}, 0, 1, nil},
	}
	for _, ck := range checks {
		seen, pages, err := scanAll(h.read, ck.opts...)
		if err != nil {
			t.Fatalf("SCAN %q: %v", ck.opts, err)
		}
		if len(seen) != ck.want || pages < ck.minPages {
			t.Errorf("SCAN %q: %d keys in %d pages, want %d keys in at least %d pages", ck.opts, len(seen), pages, ck.want, ck.minPages)
		}
		for k := range seen {
			if ck.wantMatch == nil || !ck.wantMatch(k) {
				t.Errorf("SCAN %q returned %q", ck.opts, k)
			}
		}
	}
	if n := h.m.cursors.len(); n != 0 {
		t.Errorf("%d cursors left after complete scans, want 0", n)
	}
}

func TestScanReplyFormat(t *testing.T) {
	h := newHarness(t, memStore)
	h.do("MSET", "a", "1", "b", "2", "c", "3")
	if got, want := h.do("SCAN", "0"), rArray(rBulk("0"), rArray(rBulk("a"), rBulk("b"), rBulk("c"))); got != want {
		t.Fatalf("SCAN 0 = %q, want %q", got, want)
	}
	// With a seeded Rand the cursor is reproducible: the first draw of
	// PCG(1, 2), which New was given by the harness.
	first := rand.New(rand.NewPCG(1, 2)).Uint64()
	want := rArray(rBulk(strconv.FormatUint(first, 10)), rArray(rBulk("a"), rBulk("b")))
	if got := h.do("SCAN", "0", "COUNT", "2"); got != want {
		t.Fatalf("SCAN 0 COUNT 2 = %q, want %q", got, want)
	}
	if got, want := h.do("SCAN", strconv.FormatUint(first, 10), "COUNT", "2"), rArray(rBulk("0"), rArray(rBulk("c"))); got != want {
		t.Fatalf("second page = %q, want %q", got, want)
	}
	// Exactly COUNT keys left: the scan sees there is nothing after them
	// and ends now rather than with an empty page.
	if got, want := h.do("SCAN", "", "COUNT", "3"), rArray(rBulk("0"), rArray(rBulk("a"), rBulk("b"), rBulk("c"))); got != want {
		t.Fatalf("SCAN '' COUNT 3 = %q, want %q", got, want)
	}
}

func testScanErrors(t *testing.T, newStore storeFactory) {
	h := newHarness(t, newStore)
	h.do("MSET", "a", "1", "b", "2", "c", "3")
	cursor, _, err := scanPage([]byte(h.do("SCAN", "0", "COUNT", "1")))
	if err != nil {
		t.Fatal(err)
	}
	steps := []step{
		c("SCAN abc", rErr(errInvalidCursor)),
		ca(rErr(errInvalidCursor), "SCAN", " 0"),
		c("SCAN 0x10", rErr(errInvalidCursor)),
		c("SCAN 18446744073709551616", rErr(errInvalidCursor)),
		c("SCAN 12345", rErr(errInvalidCursor)),
		c("SCAN -1", rErr(errInvalidCursor)),
		c("SCAN + COUNT 1", rErr(errInvalidCursor)),
		c("SCAN abc COUNT 0", rErr(errInvalidCursor)),
		c("SCAN 0 COUNT 0", rErr(errSyntax)),
		c("SCAN 0 COUNT -1", rErr(errSyntax)),
		c("SCAN 0 COUNT x", rErr(errNotInt)),
		c("SCAN 0 COUNT", rErr(errSyntax)),
		c("SCAN 0 MATCH", rErr(errSyntax)),
		c("SCAN 0 FOO bar", rErr(errSyntax)),
		c("SCAN 12345 FOO bar", rErr(errSyntax)),
		c("SCAN -0 COUNT 10", rArray(rBulk("0"), rArray(rBulk("a"), rBulk("b"), rBulk("c")))),
		c("SCAN "+cursor+" COUNT 5", rArray(rBulk("0"), rArray(rBulk("b"), rBulk("c")))),
		// A cursor is used once.
		c("SCAN "+cursor+" COUNT 5", rErr(errInvalidCursor)),
	}
	for i, s := range steps {
		if got := h.do(s.args...); got != s.want {
			t.Fatalf("step %d %q: got %q, want %q", i, s.args, got, s.want)
		}
	}
}

// testScanConcurrent runs scans while keys that sort between and among the
// stable ones are added and deleted, both by a background writer and by
// each scanner between its pages (so churn during a scan is certain). It
// locks as the runtime does: writes exclusively, reads shared, so several
// scans run at once and share the cursor table. Every key present for the
// whole scan must be returned, and no key twice.
func testScanConcurrent(t *testing.T, newStore storeFactory) {
	seed := testSeed(t)
	h := newHarness(t, newStore)
	stable := make(map[string]bool)
	for i := range 1000 {
		k := fmt.Sprintf("s:%04d", i)
		stable[k] = true
		h.do("SET", k, "v")
	}

	var rw sync.RWMutex
	stop := make(chan struct{})
	writerErr := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(seed, 1))
		for {
			select {
			case <-stop:
				writerErr <- nil
				return
			default:
			}
			if err := churn(h, &rw, rng); err != nil {
				writerErr <- err
				return
			}
		}
	}()

	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(g+2)))
			read := func(args [][]byte) ([]byte, error) {
				if err := churn(h, &rw, rng); err != nil {
					return nil, err
				}
				rw.RLock()
				defer rw.RUnlock()
				return h.m.Read(args, baseTime, nil)
			}
			for range 3 {
				seen, _, err := scanAll(read, "MATCH", "s:*", "COUNT", strconv.Itoa(1+rng.IntN(40)))
				if err == nil {
					err = missingKeys(stable, seen)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	if err := <-writerErr; err != nil {
		t.Fatalf("writer: %v", err)
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// churn sets or deletes one key that sorts just after a stable key.
func churn(h *harness, rw *sync.RWMutex, rng *rand.Rand) error {
	k := []byte(fmt.Sprintf("s:%04d-%d", rng.IntN(1000), rng.IntN(3)))
	args := [][]byte{[]byte("DEL"), k}
	if rng.IntN(2) == 0 {
		args = [][]byte{[]byte("SET"), k, []byte("x")}
	}
	rw.Lock()
	defer rw.Unlock()
	u, err := h.m.Prepare(args, fixedEnv{baseTime})
	if err != nil {
		return err
	}
	h.seq++
	_, err = h.m.Apply(h.seq, u, nil)
	return err
}

func missingKeys(stable, seen map[string]bool) error {
	var missing []string
	for k := range stable {
		if !seen[k] {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("scan missed %d stable keys, first %q", len(missing), missing[0])
	}
	return nil
}

func testScanCursorEviction(t *testing.T, newStore storeFactory) {
	store := newStore(t)
	m := New(store, Options{Rand: rand.New(rand.NewPCG(5, 6)), MaxCursors: 4})
	env := &fakeEnv{now: baseTime, rng: rand.New(rand.NewPCG(7, 8))}
	u, err := m.Prepare(toArgs([]string{"MSET", "a", "1", "b", "2", "c", "3"}), env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Apply(1, u, nil); err != nil {
		t.Fatal(err)
	}
	var cursors []string
	for range 6 {
		out, err := m.Read(toArgs([]string{"SCAN", "0", "COUNT", "1"}), baseTime, nil)
		if err != nil {
			t.Fatal(err)
		}
		cur, _, err := scanPage(out)
		if err != nil {
			t.Fatal(err)
		}
		cursors = append(cursors, cur)
	}
	if n := m.cursors.len(); n != 4 {
		t.Fatalf("cursor table holds %d, want 4", n)
	}
	for i, cur := range cursors {
		out, err := m.Read(toArgs([]string{"SCAN", cur, "COUNT", "1"}), baseTime, nil)
		if err != nil {
			t.Fatal(err)
		}
		evicted := string(out) == rErr(errInvalidCursor)
		if evicted != (i < 2) {
			t.Errorf("cursor %d (%s): reply %q; want evicted=%v", i, cur, out, i < 2)
		}
	}
}
