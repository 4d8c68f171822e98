// Package sim holds the reusable parts of lockstep's deterministic
// simulations: a network of FIFO links with delays, resets and partitions
// (Network), a recorder of client operations (History), a porcupine model of
// a key-value store to check those operations for linearizability (KVModel),
// and a cheap trace to show what a failing seed did (Trace). The protocol
// cores' tests share their drivers here too: the seed loop behind every
// TestSim with its -seed/-seeds/-steps/-firstseed flags and replay commands
// (SeedTest, RunSeeds), an event agenda and counters, invariant
// violations and the linearizability check (Violation, CheckLinearizable),
// link faults, codec checks, and a hand-driven cluster of log-shipping
// cores (Cluster) with the lost-message scenarios they all must pass.
//
// Cluster and World drive a core only through the contract the runtime
// uses, protocol.Core: every message leaves a core encoded by its outbox,
// is decoded with the package's codec (Protocol.Encode and Decode) to be
// queued, filtered and described, and reaches the next core through Step
// as bytes, so the simulations exercise the codecs too.
//
// The chain and primary-backup simulations also share their world
// (World): replicas whose runtimes apply entries to a key-value state
// machine (KVStore) at their own pace, crashes, restarts and false
// suspicions, a master that publishes configurations, snapshot
// transfers, and clients whose writes an oracle (Writes) follows to
// their commit. A protocol supplies what differs as Rules: who takes
// over, who serves reads, what its core must never do.
//
// Nothing here reads a clock or a global random source: time is the step
// number the simulation passes in, and every random choice comes from the
// one *rand.Rand the simulation was built with, so a seed replays exactly.
// Nothing here iterates over a map either, for the same reason.
package sim

import "math/rand/v2"

// NewRand returns the PCG generator a simulation draws every random choice
// from, seeded from seed alone.
func NewRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}
