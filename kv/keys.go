package kv

import (
	"bytes"
	"math"

	"github.com/lockstep/lockstep/resp"
)

// cmdDel deletes keys and counts the live ones. A key named twice counts
// once, so the command remembers what it has already deleted.
func (m *Machine) cmdDel(p *prep, args [][]byte) error {
	keys := args[1:]
	var seen map[string]struct{}
	if len(keys) > 16 {
		seen = make(map[string]struct{}, len(keys))
	}
	var n int64
	for i, key := range keys {
		if isDuplicate(keys, i, seen) {
			continue
		}
		_, found, err := m.live(p, key)
		if err != nil {
			return err
		}
		if found {
			p.del(key)
			n++
		}
	}
	p.reply = resp.AppendInt(p.reply, n)
	return nil
}

// isDuplicate reports whether keys[i] appeared earlier in keys, using seen
// (which it fills) when the caller made one for a long list.
func isDuplicate(keys [][]byte, i int, seen map[string]struct{}) bool {
	if seen != nil {
		if _, ok := seen[string(keys[i])]; ok {
			return true
		}
		seen[string(keys[i])] = struct{}{}
		return false
	}
	for _, k := range keys[:i] {
		if bytes.Equal(k, keys[i]) {
			return true
		}
	}
	return false
}

// Flags of EXPIRE and its relatives.
const (
	expireNX = 1 << iota
	expireXX
	expireGT
	expireLT
)

func (m *Machine) cmdExpire(p *prep, args [][]byte) error {
	return m.expireGeneric(p, args, p.now, true, "expire")
}

func (m *Machine) cmdPExpire(p *prep, args [][]byte) error {
	return m.expireGeneric(p, args, p.now, false, "pexpire")
}

func (m *Machine) cmdExpireAt(p *prep, args [][]byte) error {
	return m.expireGeneric(p, args, 0, true, "expireat")
}

func (m *Machine) cmdPExpireAt(p *prep, args [][]byte) error {
	return m.expireGeneric(p, args, 0, false, "pexpireat")
}

// parseExpireFlags follows Redis's parseExtendedExpireArgumentsOrReply.
func parseExpireFlags(opts [][]byte) (int, string) {
	flags := 0
	for _, opt := range opts {
		switch {
		case equalFold(opt, "nx"):
			flags |= expireNX
		case equalFold(opt, "xx"):
			flags |= expireXX
		case equalFold(opt, "gt"):
			flags |= expireGT
		case equalFold(opt, "lt"):
			flags |= expireLT
		default:
			return 0, "ERR Unsupported option " + string(opt)
		}
	}
	if flags&expireNX != 0 && flags&(expireXX|expireGT|expireLT) != 0 {
		return 0, "ERR NX and XX, GT or LT options at the same time are not compatible"
	}
	if flags&expireGT != 0 && flags&expireLT != 0 {
		return 0, "ERR GT and LT options at the same time are not compatible"
	}
	return flags, ""
}

// expireGeneric is Redis's expireGenericCommand: basetime is now for
// relative forms and 0 for absolute ones. A time at or before now deletes
// the key and still replies 1.
func (m *Machine) expireGeneric(p *prep, args [][]byte, basetime int64, seconds bool, name string) error {
	flags, msg := parseExpireFlags(args[3:])
	if msg != "" {
		p.reply = resp.AppendError(p.reply, msg)
		return nil
	}
	when, ok := parseInt(args[2])
	if !ok {
		p.reply = resp.AppendError(p.reply, errNotInt)
		return nil
	}
	if seconds {
		if when > math.MaxInt64/1000 || when < math.MinInt64/1000 {
			p.reply = resp.AppendError(p.reply, "ERR invalid expire time in '"+name+"' command")
			return nil
		}
		when *= 1000
	}
	if when > math.MaxInt64-basetime {
		p.reply = resp.AppendError(p.reply, "ERR invalid expire time in '"+name+"' command")
		return nil
	}
	when += basetime

	key := args[1]
	e, found, err := m.live(p, key)
	if err != nil {
		return err
	}
	if !found || !expireAllowed(flags, e.ExpireAt, when) {
		p.reply = resp.AppendInt(p.reply, 0)
		return nil
	}
	if when <= p.now {
		p.del(key)
	} else {
		p.set(key, e.Value, when)
	}
	p.reply = resp.AppendInt(p.reply, 1)
	return nil
}

// expireAllowed applies NX, XX, GT and LT to a key whose current expiry is
// cur (0 for none, which GT and LT treat as infinite).
func expireAllowed(flags int, cur, when int64) bool {
	switch {
	case flags&expireNX != 0 && cur != 0:
		return false
	case flags&expireXX != 0 && cur == 0:
		return false
	case flags&expireGT != 0 && (cur == 0 || when <= cur):
		return false
	case flags&expireLT != 0 && cur != 0 && when >= cur:
		return false
	}
	return true
}

func (m *Machine) cmdPersist(p *prep, args [][]byte) error {
	e, found, err := m.live(p, args[1])
	if err != nil {
		return err
	}
	if !found || e.ExpireAt == 0 {
		p.reply = resp.AppendInt(p.reply, 0)
		return nil
	}
	p.set(args[1], e.Value, 0)
	p.reply = resp.AppendInt(p.reply, 1)
	return nil
}

// cmdFlush serves FLUSHALL and FLUSHDB, which are one command here since
// there is a single database. SYNC and ASYNC are accepted and mean the same.
func (m *Machine) cmdFlush(p *prep, args [][]byte) error {
	if len(args) > 2 || (len(args) == 2 && !equalFold(args[1], "sync") && !equalFold(args[1], "async")) {
		p.reply = resp.AppendError(p.reply, errSyntax)
		return nil
	}
	p.clearAll()
	p.reply = resp.AppendOK(p.reply)
	return nil
}
