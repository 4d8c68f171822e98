package kv

import (
	"bytes"
	"container/list"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"

	"github.com/lockstep/lockstep/resp"
	"github.com/lockstep/lockstep/storage"
)

const errInvalidCursor = "ERR invalid cursor"

// scanArgs are SCAN's parsed options.
type scanArgs struct {
	count     int
	pattern   []byte // nil matches everything
	typeMatch bool   // false when a TYPE filter names a type other than string
}

// parseScanArgs follows Redis's scanGenericCommand: COUNT must be a
// positive integer, MATCH "*" is no filter, and an unknown TYPE is not an
// error but matches nothing.
func parseScanArgs(opts [][]byte) (scanArgs, string) {
	a := scanArgs{count: 10, typeMatch: true}
	for i := 0; i < len(opts); i += 2 {
		if i+1 >= len(opts) {
			return a, errSyntax
		}
		val := opts[i+1]
		switch {
		case equalFold(opts[i], "count"):
			n, ok := parseInt(val)
			if !ok {
				return a, errNotInt
			}
			if n < 1 {
				return a, errSyntax
			}
			a.count = int(min(n, 1<<30))
		case equalFold(opts[i], "match"):
			a.pattern = val
			if len(val) == 1 && val[0] == '*' {
				a.pattern = nil
			}
		case equalFold(opts[i], "type"):
			a.typeMatch = equalFold(val, "string")
		default:
			return a, errSyntax
		}
	}
	return a, ""
}

// readScan serves SCAN. The store is ordered, so a scan walks keys in
// order and resumes just after the last key it examined: a key present for
// the whole scan is returned exactly once. Clients expect the cursor to be
// an unsigned integer, so the last key is kept in a table under a random
// number, and that number is the reply's cursor.
func (m *Machine) readScan(args [][]byte, now int64, out []byte) ([]byte, error) {
	cursor, ok := parseCursor(args[1])
	if !ok {
		return resp.AppendError(out, errInvalidCursor), nil
	}
	a, msg := parseScanArgs(args[2:])
	if msg != "" {
		return resp.AppendError(out, msg), nil
	}
	var start []byte
	if cursor != 0 {
		last, ok := m.cursors.take(cursor)
		if !ok {
			return resp.AppendError(out, errInvalidCursor), nil
		}
		start = append(last, 0) // the smallest key after last
	}
	prefix := literalPrefix(a.pattern)
	if bytes.Compare(prefix, start) > 0 {
		start = prefix
	}

	var (
		elems    []byte
		n        int
		examined int
		last     []byte
		more     bool
	)
	err := m.store.Scan(start, func(key []byte, e storage.Entry) bool {
		if !bytes.HasPrefix(key, prefix) {
			return false
		}
		if examined == a.count {
			more = true
			return false
		}
		examined++
		last = append(last[:0], key...)
		if !a.typeMatch || expired(e, now) || (a.pattern != nil && !globMatch(a.pattern, key)) {
			return true
		}
		elems = resp.AppendBulk(elems, key)
		n++
		return true
	})
	if err != nil {
		return out, fmt.Errorf("kv: scan: %w", err)
	}

	var next uint64
	if more {
		next = m.cursors.put(last)
	}
	var num [20]byte
	out = resp.AppendArray(out, 2)
	out = resp.AppendBulk(out, strconv.AppendUint(num[:0], next, 10))
	out = resp.AppendArray(out, n)
	return append(out, elems...), nil
}

// literalPrefix returns the bytes every key matching pattern starts with:
// those before the first glob metacharacter. Scanning can start there and
// stop at the first key without it.
func literalPrefix(pattern []byte) []byte {
	i := bytes.IndexAny(pattern, `*?[\`)
	if i < 0 {
		return pattern
	}
	return pattern[:i]
}

// cursorTable maps SCAN cursor numbers to the last key each scan returned.
// It is local to the replica, not replicated: a client whose reads move to
// another replica restarts its scan. A cursor is used once; the table is
// bounded and drops the least recently issued cursor when full, so an
// abandoned scan costs one entry for a while and nothing after.
type cursorTable struct {
	mu    sync.Mutex
	rng   *rand.Rand
	max   int
	byID  map[uint64]*list.Element
	order *list.List // of *cursorEntry, oldest first
}

type cursorEntry struct {
	id   uint64
	last []byte
}

func newCursorTable(rng *rand.Rand, maxEntries int) *cursorTable {
	return &cursorTable{rng: rng, max: maxEntries, byID: make(map[uint64]*list.Element), order: list.New()}
}

// put stores last under a fresh random nonzero number and returns it.
func (t *cursorTable) put(last []byte) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.order.Len() >= t.max {
		oldest := t.order.Remove(t.order.Front()).(*cursorEntry)
		delete(t.byID, oldest.id)
	}
	id := t.rng.Uint64()
	for id == 0 || t.byID[id] != nil {
		id = t.rng.Uint64()
	}
	t.byID[id] = t.order.PushBack(&cursorEntry{id: id, last: last})
	return id
}

// take removes and returns the key stored under id.
func (t *cursorTable) take(id uint64) ([]byte, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	el, ok := t.byID[id]
	if !ok {
		return nil, false
	}
	delete(t.byID, id)
	return t.order.Remove(el).(*cursorEntry).last, true
}

// reset forgets every cursor, as after a Restore.
func (t *cursorTable) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.byID)
	t.order.Init()
}

// len counts the live cursors.
func (t *cursorTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byID)
}
