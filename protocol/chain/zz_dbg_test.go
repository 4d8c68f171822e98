package chain_test

import (
	"github.com/anishathalye/porcupine"
	"testing"
	"time"

	"github.com/lockstep/lockstep/sim"
)

func TestZZShape(t *testing.T) {
	w := newWorld(*flagSeed, nil)
	if err := w.run(*flagSteps, quietSteps); err != nil {
		t.Fatal(err)
	}
	w.settlePending()
	ops := w.hist.Operations()
	per := map[string][3]int{}
	for _, op := range ops {
		in := op.Input.(sim.KVInput)
		c := per[in.Key]
		c[in.Op-1]++
		per[in.Key] = c
	}
	t.Logf("per key (get, put, append): %v", per)
	// max concurrency: at each call, how many ops of the same key are open
	for k := range per {
		maxOpen, long := 0, 0
		for i, a := range ops {
			if a.Input.(sim.KVInput).Key != k {
				continue
			}
			if a.Return-a.Call > 100 {
				long++
			}
			open := 0
			for _, b := range ops[:i] {
				if b.Input.(sim.KVInput).Key == k && b.Return > a.Call {
					open++
				}
			}
			maxOpen = max(maxOpen, open)
		}
		t.Logf("key %s: max open at a call %d, long ops %d", k, maxOpen, long)
	}
}

func TestZZKeyC(t *testing.T) {
	w := newWorld(*flagSeed, nil)
	if err := w.run(*flagSteps, quietSteps); err != nil {
		t.Fatal(err)
	}
	w.settlePending()
	for _, key := range []string{"a", "b", "c"} {
		var h []porcupine.Operation
		for _, op := range w.hist.Operations() {
			if op.Input.(sim.KVInput).Key == key {
				h = append(h, op)
			}
		}
		start := time.Now()
		res := porcupine.CheckOperationsTimeout(sim.KVModel(), h, 120*time.Second)
		t.Logf("key %s: %d ops: %v in %v", key, len(h), res, time.Since(start))
	}
}

func TestZZRegion(t *testing.T) {
	w := newWorld(*flagSeed, nil)
	if err := w.run(*flagSteps, quietSteps); err != nil {
		t.Fatal(err)
	}
	w.settlePending()
	ops := w.hist.Operations()
	best, at := 0, 0
	for i, a := range ops {
		open := 0
		for _, b := range ops[:i] {
			if b.Input.(sim.KVInput).Key == "c" && a.Input.(sim.KVInput).Key == "c" && b.Return > a.Call {
				open++
			}
		}
		if open > best {
			best, at = open, i
		}
	}
	for _, b := range ops[:at+1] {
		if b.Input.(sim.KVInput).Key == "c" && b.Return > ops[at].Call {
			t.Logf("client %d %+v call %d return %d out %v", b.ClientId, b.Input, b.Call, b.Return, b.Output)
		}
	}
}
