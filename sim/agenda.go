package sim

import (
	"cmp"
	"slices"
)

// Agenda holds what a simulation schedules ahead of time: a configuration
// reaching a node, a cut link healing, a snapshot arriving, a node
// restarting. Items come out at the step they are due, and items due at
// the same step in the order they were added, so a seed replays exactly
// (unlike a map of timers).
//
// Agenda is not safe for concurrent use; a simulation is one goroutine.
type Agenda[T any] struct {
	items []agendaItem[T]
	added uint64
}

type agendaItem[T any] struct {
	at    int64
	order uint64
	v     T
}

// Add schedules v for step at.
func (a *Agenda[T]) Add(at int64, v T) {
	a.added++
	it := agendaItem[T]{at: at, order: a.added, v: v}
	i, _ := slices.BinarySearchFunc(a.items, it, func(x, y agendaItem[T]) int {
		return cmp.Or(cmp.Compare(x.at, y.at), cmp.Compare(x.order, y.order))
	})
	a.items = slices.Insert(a.items, i, it)
}

// Due removes and returns every item due at or before step now, in order.
func (a *Agenda[T]) Due(now int64) []T {
	n := 0
	for n < len(a.items) && a.items[n].at <= now {
		n++
	}
	if n == 0 {
		return nil
	}
	out := make([]T, n)
	for i := range out {
		out[i] = a.items[i].v
	}
	clear(a.items[:n])
	a.items = a.items[n:]
	return out
}

// Drop removes every item for which match returns true, as when the node
// an item was for crashed, and returns how many it removed.
func (a *Agenda[T]) Drop(match func(T) bool) int {
	n := len(a.items)
	a.items = slices.DeleteFunc(a.items, func(it agendaItem[T]) bool { return match(it.v) })
	return n - len(a.items)
}

// Len is the number of items scheduled.
func (a *Agenda[T]) Len() int { return len(a.items) }
