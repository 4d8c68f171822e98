package sim

import (
	"fmt"
	"time"

	"github.com/anishathalye/porcupine"
)

// KVOp is an operation on a key-value register store.
type KVOp uint8

// The operations KVModel knows.
const (
	KVGet    KVOp = iota + 1 // returns the value ("" if never written)
	KVPut                    // sets the value
	KVAppend                 // appends to the value
)

// KVInput is the input of one KVModel operation.
type KVInput struct {
	Op    KVOp
	Key   string
	Value string // for put and append
}

// KVOutput is the output of a get. Puts and appends record any output;
// the model ignores it. A nil output means unknown (a pending operation).
type KVOutput struct {
	Value string
}

// KVModel is the sequential specification of a store of string registers
// with put(k, v), append(k, v) and get(k). Operations on different keys
// commute, so the model partitions the history by key and checks each key
// on its own, which keeps porcupine fast; the state of a partition is the
// value of its key.
func KVModel() porcupine.Model {
	return porcupine.Model{
		Partition: partitionByKey,
		Init:      func() any { return "" },
		Step:      kvStep,
		DescribeOperation: func(input, output any) string {
			in := input.(KVInput)
			switch in.Op {
			case KVGet:
				if out, ok := output.(KVOutput); ok {
					return fmt.Sprintf("get(%s) -> %q", in.Key, out.Value)
				}
				return fmt.Sprintf("get(%s) -> ?", in.Key)
			case KVPut:
				return fmt.Sprintf("put(%s, %q)", in.Key, in.Value)
			}
			return fmt.Sprintf("append(%s, %q)", in.Key, in.Value)
		},
		DescribeState: func(state any) string { return fmt.Sprintf("%q", state) },
	}
}

func kvStep(state, input, output any) (bool, any) {
	st := state.(string)
	in := input.(KVInput)
	switch in.Op {
	case KVGet:
		out, ok := output.(KVOutput)
		return !ok || out.Value == st, st
	case KVPut:
		return true, in.Value
	case KVAppend:
		return true, st + in.Value
	}
	return false, st
}

// partitionByKey groups operations by key, in order of first appearance so
// the partitioning is deterministic.
func partitionByKey(history []porcupine.Operation) [][]porcupine.Operation {
	index := map[string]int{}
	var parts [][]porcupine.Operation
	for _, op := range history {
		k := op.Input.(KVInput).Key
		i, ok := index[k]
		if !ok {
			i = len(parts)
			index[k] = i
			parts = append(parts, nil)
		}
		parts[i] = append(parts[i], op)
	}
	return parts
}

// CheckKV checks h against KVModel within timeout (0: no limit). The
// result is porcupine.Unknown if it ran out of time; info can be passed to
// porcupine.Visualize to see a failure.
func CheckKV(h *History, timeout time.Duration) (porcupine.CheckResult, porcupine.LinearizationInfo) {
	return porcupine.CheckOperationsVerbose(KVModel(), h.Operations(), timeout)
}
