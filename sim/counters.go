package sim

import (
	"fmt"
	"strings"
)

// Counters counts named events of a simulation: faults injected, paths
// taken. They serve two ends: a summary of what a run did, and a
// coverage check that a batch of seeds exercised every fault it is meant
// to (a simulator whose faults never fire checks nothing). Names keep the
// order of their first use, so the summary is deterministic.
//
// The zero value is ready to use. Counters is not safe for concurrent
// use; merge per-seed counters under a lock.
type Counters struct {
	names []string
	index map[string]int
	n     []int
}

// Add adds k to the count of name.
func (c *Counters) Add(name string, k int) {
	i, ok := c.index[name]
	if !ok {
		if c.index == nil {
			c.index = map[string]int{}
		}
		i = len(c.names)
		c.index[name] = i
		c.names = append(c.names, name)
		c.n = append(c.n, 0)
	}
	c.n[i] += k
}

// Inc adds one to the count of name.
func (c *Counters) Inc(name string) { c.Add(name, 1) }

// Get returns the count of name, 0 if it was never counted.
func (c *Counters) Get(name string) int {
	if i, ok := c.index[name]; ok {
		return c.n[i]
	}
	return 0
}

// Merge adds every count of o to c.
func (c *Counters) Merge(o *Counters) {
	for i, name := range o.names {
		c.Add(name, o.n[i])
	}
}

// Missing returns those of names whose count is 0, in the order given.
func (c *Counters) Missing(names ...string) []string {
	var out []string
	for _, name := range names {
		if c.Get(name) == 0 {
			out = append(out, name)
		}
	}
	return out
}

// String lists the counts as "name n" pairs, in order of first use.
func (c *Counters) String() string {
	var b strings.Builder
	for i, name := range c.names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", name, c.n[i])
	}
	return b.String()
}
