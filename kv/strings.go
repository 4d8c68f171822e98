package kv

import (
	"fmt"
	"math"
	"strconv"

	"github.com/lockstep/lockstep/resp"
	"github.com/lockstep/lockstep/storage"
)

// maxStringLen is Redis's default proto-max-bulk-len, the largest value
// APPEND may build.
const maxStringLen = 512 << 20

// setFlags are SET's options, as parsed by Redis's
// parseExtendedStringArgumentsOrReply.
type setFlags uint16

const (
	setNX setFlags = 1 << iota
	setXX
	setGet
	setKeepTTL
	setEX
	setPX
	setEXAT
	setPXAT
	// setIntReply makes SETNX's replies :1 and :0 instead of +OK and nil.
	setIntReply
)

const setExpireFlags = setEX | setPX | setEXAT | setPXAT

// setOptions is a parsed SET-family request.
type setOptions struct {
	flags  setFlags
	expire []byte // the EX/PX/EXAT/PXAT argument
	name   string // for "invalid expire time in '...' command"
}

// live returns key's entry if it exists and has not expired at p.now. An
// expired entry is reported absent and deleted by the Update, so every
// replica drops it at the same point in the history.
func (m *Machine) live(p *prep, key []byte) (storage.Entry, bool, error) {
	e, ok, err := m.store.Get(key)
	if err != nil {
		return storage.Entry{}, false, fmt.Errorf("kv: read %q: %w", key, err)
	}
	if !ok {
		return storage.Entry{}, false, nil
	}
	if expired(e, p.now) {
		p.del(key)
		return storage.Entry{}, false, nil
	}
	return e, true, nil
}

func expired(e storage.Entry, now int64) bool {
	return e.ExpireAt != 0 && e.ExpireAt <= now
}

func (m *Machine) cmdSet(p *prep, args [][]byte) error {
	o := setOptions{name: "set"}
	if !parseSetOptions(&o, args[3:]) {
		p.reply = resp.AppendError(p.reply, errSyntax)
		return nil
	}
	return m.setGeneric(p, args[1], args[2], o)
}

func (m *Machine) cmdSetNX(p *prep, args [][]byte) error {
	return m.setGeneric(p, args[1], args[2], setOptions{flags: setNX | setIntReply, name: "setnx"})
}

func (m *Machine) cmdSetEX(p *prep, args [][]byte) error {
	return m.setGeneric(p, args[1], args[3], setOptions{flags: setEX, expire: args[2], name: "setex"})
}

func (m *Machine) cmdPSetEX(p *prep, args [][]byte) error {
	return m.setGeneric(p, args[1], args[3], setOptions{flags: setPX, expire: args[2], name: "psetex"})
}

func (m *Machine) cmdGetSet(p *prep, args [][]byte) error {
	return m.setGeneric(p, args[1], args[2], setOptions{flags: setGet, name: "getset"})
}

// parseSetOptions applies Redis's rules: NX and XX exclude each other,
// KEEPTTL and the four expiry options exclude each other, a repeated option
// is allowed (the last expiry wins), and anything else is a syntax error.
func parseSetOptions(o *setOptions, opts [][]byte) bool {
	for j := 0; j < len(opts); j++ {
		opt, hasNext := opts[j], j+1 < len(opts)
		f := o.flags
		var add setFlags
		switch {
		case equalFold(opt, "nx") && f&setXX == 0:
			add = setNX
		case equalFold(opt, "xx") && f&setNX == 0:
			add = setXX
		case equalFold(opt, "get"):
			add = setGet
		case equalFold(opt, "keepttl") && f&setExpireFlags == 0:
			add = setKeepTTL
		case equalFold(opt, "ex") && hasNext && f&(setKeepTTL|setExpireFlags&^setEX) == 0:
			add = setEX
		case equalFold(opt, "px") && hasNext && f&(setKeepTTL|setExpireFlags&^setPX) == 0:
			add = setPX
		case equalFold(opt, "exat") && hasNext && f&(setKeepTTL|setExpireFlags&^setEXAT) == 0:
			add = setEXAT
		case equalFold(opt, "pxat") && hasNext && f&(setKeepTTL|setExpireFlags&^setPXAT) == 0:
			add = setPXAT
		default:
			return false
		}
		o.flags |= add
		if add&setExpireFlags != 0 {
			j++
			o.expire = opts[j]
		}
	}
	return true
}

// expireAt turns the request's expiry into absolute milliseconds, as
// Redis's getExpireMillisecondsOrReply does. It returns an error text when
// the value is not an integer, not positive, or overflows.
func (o *setOptions) expireAt(now int64) (int64, string) {
	ms, ok := parseInt(o.expire)
	if !ok {
		return 0, errNotInt
	}
	seconds := o.flags&(setEX|setEXAT) != 0
	if ms <= 0 || (seconds && ms > math.MaxInt64/1000) {
		return 0, "ERR invalid expire time in '" + o.name + "' command"
	}
	if seconds {
		ms *= 1000
	}
	if o.flags&(setEX|setPX) != 0 {
		ms += now // wraps on overflow, caught below as in Redis
	}
	if ms <= 0 {
		return 0, "ERR invalid expire time in '" + o.name + "' command"
	}
	return ms, ""
}

// setGeneric is Redis's setGenericCommand for SET, SETNX, SETEX, PSETEX and
// GETSET. A plain SET does not read the key at all: the write replaces it
// whatever it held.
func (m *Machine) setGeneric(p *prep, key, value []byte, o setOptions) error {
	var exp int64
	if o.flags&setExpireFlags != 0 {
		var msg string
		if exp, msg = o.expireAt(p.now); msg != "" {
			p.reply = resp.AppendError(p.reply, msg)
			return nil
		}
	}
	var old storage.Entry
	found := false
	if o.flags&(setNX|setXX|setGet|setKeepTTL) != 0 {
		var err error
		if old, found, err = m.live(p, key); err != nil {
			return err
		}
	}
	if o.flags&setGet != 0 {
		p.reply = appendValue(p.reply, old, found)
	}
	if (o.flags&setNX != 0 && found) || (o.flags&setXX != 0 && !found) {
		switch {
		case o.flags&setIntReply != 0:
			p.reply = resp.AppendInt(p.reply, 0)
		case o.flags&setGet == 0:
			p.reply = resp.AppendNull(p.reply)
		}
		return nil
	}
	if o.flags&setKeepTTL != 0 && found {
		exp = old.ExpireAt
	}
	if exp != 0 && exp <= p.now {
		// EXAT or PXAT in the past: the key is set and expires at once.
		p.del(key)
	} else {
		p.set(key, value, exp)
	}
	switch {
	case o.flags&setIntReply != 0:
		p.reply = resp.AppendInt(p.reply, 1)
	case o.flags&setGet == 0:
		p.reply = resp.AppendOK(p.reply)
	}
	return nil
}

// appendValue appends e's value as a bulk string, or a null when absent.
func appendValue(b []byte, e storage.Entry, found bool) []byte {
	if !found {
		return resp.AppendNull(b)
	}
	return resp.AppendBulk(b, e.Value)
}

func (m *Machine) cmdGetDel(p *prep, args [][]byte) error {
	e, found, err := m.live(p, args[1])
	if err != nil {
		return err
	}
	if found {
		p.del(args[1])
	}
	p.reply = appendValue(p.reply, e, found)
	return nil
}

func (m *Machine) cmdIncr(p *prep, args [][]byte) error { return m.incrBy(p, args[1], 1) }
func (m *Machine) cmdDecr(p *prep, args [][]byte) error { return m.incrBy(p, args[1], -1) }

func (m *Machine) cmdIncrBy(p *prep, args [][]byte) error {
	n, ok := parseInt(args[2])
	if !ok {
		p.reply = resp.AppendError(p.reply, errNotInt)
		return nil
	}
	return m.incrBy(p, args[1], n)
}

func (m *Machine) cmdDecrBy(p *prep, args [][]byte) error {
	n, ok := parseInt(args[2])
	switch {
	case !ok:
		p.reply = resp.AppendError(p.reply, errNotInt)
		return nil
	case n == math.MinInt64:
		p.reply = resp.AppendError(p.reply, "ERR decrement would overflow")
		return nil
	}
	return m.incrBy(p, args[1], -n)
}

// incrBy adds incr to the integer stored at key (0 when absent), keeping
// the key's expiry as Redis does.
func (m *Machine) incrBy(p *prep, key []byte, incr int64) error {
	e, found, err := m.live(p, key)
	if err != nil {
		return err
	}
	var v int64
	if found {
		var ok bool
		if v, ok = parseInt(e.Value); !ok {
			p.reply = resp.AppendError(p.reply, errNotInt)
			return nil
		}
	}
	if (incr < 0 && v < 0 && incr < math.MinInt64-v) || (incr > 0 && v > 0 && incr > math.MaxInt64-v) {
		p.reply = resp.AppendError(p.reply, errOverflow)
		return nil
	}
	v += incr
	p.buf = strconv.AppendInt(p.buf[:0], v, 10)
	p.set(key, p.buf, e.ExpireAt)
	p.reply = resp.AppendInt(p.reply, v)
	return nil
}

func (m *Machine) cmdAppend(p *prep, args [][]byte) error {
	key, tail := args[1], args[2]
	e, found, err := m.live(p, key)
	if err != nil {
		return err
	}
	if !found {
		p.set(key, tail, 0)
		p.reply = resp.AppendInt(p.reply, int64(len(tail)))
		return nil
	}
	total := len(e.Value) + len(tail)
	if total > maxStringLen {
		p.reply = resp.AppendError(p.reply, "ERR string exceeds maximum allowed size (proto-max-bulk-len)")
		return nil
	}
	p.buf = append(append(p.buf[:0], e.Value...), tail...)
	p.set(key, p.buf, e.ExpireAt)
	p.reply = resp.AppendInt(p.reply, int64(total))
	return nil
}

// cmdMSet sets every pair and drops their expiries. A key given twice gets
// the later value because the store applies a batch's ops in order.
func (m *Machine) cmdMSet(p *prep, args [][]byte) error {
	if len(args)%2 == 0 {
		p.reply = resp.AppendError(p.reply, arityError("mset"))
		return nil
	}
	for i := 1; i < len(args); i += 2 {
		p.set(args[i], args[i+1], 0)
	}
	p.reply = resp.AppendOK(p.reply)
	return nil
}
