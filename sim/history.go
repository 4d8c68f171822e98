package sim

import (
	"math"

	"github.com/anishathalye/porcupine"
)

// OpID names an operation recorded in a History.
type OpID int

// History records client operations for a linearizability check. Time is
// the order of Invoke and Return calls, not the simulation step, so two
// events in the same step keep their real order.
//
// An operation that never returns (its client gave up: the node it was
// waiting on crashed) is pending: it may or may not have taken effect. It
// is reported with return time math.MaxInt64 and a nil output, which a
// model must accept as "unknown"; porcupine may then linearize it anywhere
// after its call, including after every other operation, which is the same
// as never.
//
// A simulation that knows more than the clients did can shrink the search:
// Forget drops a pending operation known never to have taken effect.
type History struct {
	ops    []porcupine.Operation
	done   []bool
	forgot []bool
	clock  int64
}

// Invoke records that client called an operation with input.
func (h *History) Invoke(client int, input any) OpID {
	h.clock++
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: input, Call: h.clock, Return: math.MaxInt64})
	h.done = append(h.done, false)
	h.forgot = append(h.forgot, false)
	return OpID(len(h.ops) - 1)
}

// Return records that operation id returned output.
func (h *History) Return(id OpID, output any) {
	h.clock++
	h.ops[id].Output = output
	h.ops[id].Return = h.clock
	h.done[id] = true
}

// Done reports whether operation id has returned.
func (h *History) Done(id OpID) bool { return h.done[id] }

// Forget removes pending operation id from the history, because it is
// known never to have taken effect (its write was lost with the node that
// ordered it). Porcupine then need not consider every place it could go,
// which grows exponentially with the number of pending operations on a key.
func (h *History) Forget(id OpID) {
	if !h.done[id] {
		h.forgot[id] = true
	}
}

// Pending counts the operations that have not returned and are not
// forgotten.
func (h *History) Pending() int {
	n := 0
	for i, d := range h.done {
		if !d && !h.forgot[i] {
			n++
		}
	}
	return n
}

// Operations returns the history for porcupine, without forgotten
// operations.
func (h *History) Operations() []porcupine.Operation {
	out := make([]porcupine.Operation, 0, len(h.ops))
	for i, op := range h.ops {
		if !h.forgot[i] {
			out = append(out, op)
		}
	}
	return out
}

// Len is the number of operations recorded, forgotten ones included.
func (h *History) Len() int { return len(h.ops) }
