package sim

import "fmt"

// Client is a simulated client: it runs one operation at a time, a write
// or a read, and waits on the replica N that took it until that
// replica's commit point reaches Seq.
type Client[N any] struct {
	ID      int
	Busy    bool
	Read    bool   // the operation is a read, answered with Value once released
	Value   string // a read's result
	Op      OpID
	Node    N      // the replica it waits on
	Seq     uint64 // the seq it waits for
	Write   int    // its write's index in Writes
	Counter int    // writes made, for unique values
}

// worldKeys is how many keys clients use. Fewer keys mean more
// contention, but porcupine's search grows with the factorial of the
// appends that are concurrent on one key: with 3 keys, about one seed in
// 20,000 took minutes.
const worldKeys = 5

// clients starts operations, in the faulty steps only: three in ten are
// reads (Rules.Read), the others writes at the master's first member. An
// operation refused is not recorded: it cannot have taken effect.
func (w *World[M, R]) clients() error {
	if !w.Faulty {
		return nil
	}
	for _, c := range w.Clients {
		if c.Busy || w.Rng.Float64() >= w.Params.POp {
			continue
		}
		key := string(rune('a' + w.Rng.IntN(worldKeys)))
		var err error
		switch r := w.Rng.IntN(10); {
		case r < 3:
			w.Rules.Read(c, key)
		case r < 6:
			err = w.write(c, KVPut, key)
		default:
			err = w.write(c, KVAppend, key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// write proposes a put or append of a value unique to the client at the
// master's first member and, if Rules.CheckPropose lets it go ahead,
// queues it there to apply and records it.
func (w *World[M, R]) write(c *Client[*Replica[R]], op KVOp, key string) error {
	n := w.By[Config(w.Cfg).Members[0]]
	if !n.Alive {
		return nil
	}
	c.Counter++
	value := fmt.Sprintf("%d.%d;", c.ID, c.Counter)
	data := KVEntry(op, key, value)
	seq, err := n.Core.Propose(data)
	if ok, err := w.Rules.CheckPropose(n, err); !ok || err != nil {
		return err
	}
	if seq != n.Queued+1 {
		return Violation("%s: Propose gave seq %d after %d", n.Name, seq, n.Queued)
	}
	n.Queue = append(n.Queue, Entry{Seq: seq, Data: data})
	n.Queued = seq
	c.Busy, c.Read, c.Node, c.Seq = true, false, n, seq
	c.Op = w.Hist.Invoke(c.ID, KVInput{Op: op, Key: key, Value: value})
	c.Write = w.Writes.Add(c.Op, seq, data)
	w.Stats.Writes++
	w.Trace.Logf("client %d: %s %s %q at %s seq %d", c.ID, op, key, value, n.Name, seq)
	return nil
}

// Release answers a client whose write or read the commit point reached.
func (w *World[M, R]) Release(c *Client[*Replica[R]]) {
	c.Busy = false
	if c.Read {
		w.Hist.Return(c.Op, KVOutput{Value: c.Value})
		w.Trace.Logf("client %d: read at %d done", c.ID, c.Seq)
		return
	}
	w.Hist.Return(c.Op, nil)
	w.Trace.Logf("client %d: write %d done", c.ID, c.Seq)
}

// Settle forgets, after the quiet steps, every write in doubt (see
// Writes.Settle), counts them as lost, and returns how many operations
// are still pending, which is none unless the simulation lost a client.
func (w *World[M, R]) Settle() int {
	w.Stats.Lost += w.Writes.Settle()
	return w.Hist.Pending()
}

// Waiting returns a client still waiting for a reply, or nil.
func (w *World[M, R]) Waiting() *Client[*Replica[R]] {
	for _, c := range w.Clients {
		if c.Busy {
			return c
		}
	}
	return nil
}
