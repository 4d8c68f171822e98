package kv

import (
	"fmt"

	"github.com/lockstep/lockstep/resp"
	"github.com/lockstep/lockstep/storage"
)

// get returns key's entry if it exists and has not expired at now. Reads
// never delete: only a Prepare may change state.
func (m *Machine) get(key []byte, now int64) (storage.Entry, bool, error) {
	e, ok, err := m.store.Get(key)
	if err != nil {
		return storage.Entry{}, false, fmt.Errorf("kv: read %q: %w", key, err)
	}
	if !ok || expired(e, now) {
		return storage.Entry{}, false, nil
	}
	return e, true, nil
}

// readGet appends the stored value straight to out: a GET allocates
// nothing when the store's Get does not.
func (m *Machine) readGet(args [][]byte, now int64, out []byte) ([]byte, error) {
	e, found, err := m.get(args[1], now)
	if err != nil {
		return out, err
	}
	return appendValue(out, e, found), nil
}

func (m *Machine) readExists(args [][]byte, now int64, out []byte) ([]byte, error) {
	var n int64
	for _, key := range args[1:] {
		_, found, err := m.get(key, now)
		if err != nil {
			return out, err
		}
		if found {
			n++
		}
	}
	return resp.AppendInt(out, n), nil
}

func (m *Machine) readStrlen(args [][]byte, now int64, out []byte) ([]byte, error) {
	e, _, err := m.get(args[1], now)
	if err != nil {
		return out, err
	}
	return resp.AppendInt(out, int64(len(e.Value))), nil
}

func (m *Machine) readMGet(args [][]byte, now int64, out []byte) ([]byte, error) {
	out = resp.AppendArray(out, len(args)-1)
	for _, key := range args[1:] {
		e, found, err := m.get(key, now)
		if err != nil {
			return out, err
		}
		out = appendValue(out, e, found)
	}
	return out, nil
}

func (m *Machine) readTTL(args [][]byte, now int64, out []byte) ([]byte, error) {
	return m.ttl(args[1], now, false, out)
}

func (m *Machine) readPTTL(args [][]byte, now int64, out []byte) ([]byte, error) {
	return m.ttl(args[1], now, true, out)
}

// ttl replies -2 for a missing key, -1 for one without expiry, and else the
// time left, rounded to the nearest second for TTL as Redis rounds it.
func (m *Machine) ttl(key []byte, now int64, millis bool, out []byte) ([]byte, error) {
	e, found, err := m.get(key, now)
	switch {
	case err != nil:
		return out, err
	case !found:
		return resp.AppendInt(out, -2), nil
	case e.ExpireAt == 0:
		return resp.AppendInt(out, -1), nil
	}
	left := max(e.ExpireAt-now, 0)
	if !millis {
		left = (left + 500) / 1000
	}
	return resp.AppendInt(out, left), nil
}

func (m *Machine) readType(args [][]byte, now int64, out []byte) ([]byte, error) {
	_, found, err := m.get(args[1], now)
	if err != nil {
		return out, err
	}
	if found {
		return resp.AppendSimple(out, "string"), nil
	}
	return resp.AppendSimple(out, "none"), nil
}

// readDBSize answers from the store's count in O(1), as Redis does: like
// Redis's, the count includes keys that have expired but not yet been
// deleted by a write or by the expiry sweep (PrepareExpireSweep). An exact
// count would scan the keyspace while holding off every write.
func (m *Machine) readDBSize(_ [][]byte, _ int64, out []byte) ([]byte, error) {
	return resp.AppendInt(out, m.store.Stats().Keys), nil
}
