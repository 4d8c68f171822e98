package kv

import "github.com/lockstep/lockstep/statemachine"

// spec ties a command's metadata to its handler. Exactly one of write and
// read is set, matching cmd.Kind.
type spec struct {
	cmd   statemachine.Command
	write func(m *Machine, p *prep, args [][]byte) error
	read  func(m *Machine, args [][]byte, now int64, out []byte) ([]byte, error)
}

// Key position shorthands for the table below, as Redis's COMMAND reports
// them: first key, last key (-1 for the last argument), step.
const (
	keyNone = iota
	keyOne
	keyAll
	keyPairs
)

func writeSpec(name string, arity, keys int, fast bool, fn func(*Machine, *prep, [][]byte) error) spec {
	return spec{cmd: command(name, arity, statemachine.KindWrite, keys, fast), write: fn}
}

func readSpec(name string, arity, keys int, fast bool, fn func(*Machine, [][]byte, int64, []byte) ([]byte, error)) spec {
	return spec{cmd: command(name, arity, statemachine.KindRead, keys, fast), read: fn}
}

func command(name string, arity int, kind statemachine.Kind, keys int, fast bool) statemachine.Command {
	c := statemachine.Command{Name: name, Arity: arity, Kind: kind, Fast: fast}
	switch keys {
	case keyOne:
		c.FirstKey, c.LastKey, c.KeyStep = 1, 1, 1
	case keyAll:
		c.FirstKey, c.LastKey, c.KeyStep = 1, -1, 1
	case keyPairs:
		c.FirstKey, c.LastKey, c.KeyStep = 1, -1, 2
	}
	return c
}

// commandSpecs returns the command table. Arity, key positions and the fast
// flag are those Redis 7 reports in COMMAND INFO.
func commandSpecs() []spec {
	return []spec{
		writeSpec("set", -3, keyOne, false, (*Machine).cmdSet),
		writeSpec("setnx", 3, keyOne, true, (*Machine).cmdSetNX),
		writeSpec("setex", 4, keyOne, false, (*Machine).cmdSetEX),
		writeSpec("psetex", 4, keyOne, false, (*Machine).cmdPSetEX),
		writeSpec("getset", 3, keyOne, true, (*Machine).cmdGetSet),
		writeSpec("getdel", 2, keyOne, true, (*Machine).cmdGetDel),
		writeSpec("del", -2, keyAll, false, (*Machine).cmdDel),
		writeSpec("unlink", -2, keyAll, true, (*Machine).cmdDel),
		writeSpec("incr", 2, keyOne, true, (*Machine).cmdIncr),
		writeSpec("decr", 2, keyOne, true, (*Machine).cmdDecr),
		writeSpec("incrby", 3, keyOne, true, (*Machine).cmdIncrBy),
		writeSpec("decrby", 3, keyOne, true, (*Machine).cmdDecrBy),
		writeSpec("append", 3, keyOne, true, (*Machine).cmdAppend),
		writeSpec("mset", -3, keyPairs, false, (*Machine).cmdMSet),
		writeSpec("expire", -3, keyOne, true, (*Machine).cmdExpire),
		writeSpec("pexpire", -3, keyOne, true, (*Machine).cmdPExpire),
		writeSpec("expireat", -3, keyOne, true, (*Machine).cmdExpireAt),
		writeSpec("pexpireat", -3, keyOne, true, (*Machine).cmdPExpireAt),
		writeSpec("persist", 2, keyOne, true, (*Machine).cmdPersist),
		writeSpec("flushall", -1, keyNone, false, (*Machine).cmdFlush),
		writeSpec("flushdb", -1, keyNone, false, (*Machine).cmdFlush),

		readSpec("get", 2, keyOne, true, (*Machine).readGet),
		readSpec("exists", -2, keyAll, true, (*Machine).readExists),
		readSpec("strlen", 2, keyOne, true, (*Machine).readStrlen),
		readSpec("mget", -2, keyAll, true, (*Machine).readMGet),
		readSpec("ttl", 2, keyOne, true, (*Machine).readTTL),
		readSpec("pttl", 2, keyOne, true, (*Machine).readPTTL),
		readSpec("type", 2, keyOne, true, (*Machine).readType),
		readSpec("dbsize", 1, keyNone, true, (*Machine).readDBSize),
		readSpec("scan", -2, keyNone, false, (*Machine).readScan),
	}
}
