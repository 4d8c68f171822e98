// Package nodesim runs whole lockstep nodes in one deterministic process:
// the real replica runtime (package replica) with the real state machine
// (dedup over kv over the memory store) and the real reconfiguration
// planner (coord.Plan), wired to a simulated network, a simulated
// coordinator and simulated clients, all driven by one seed.
//
// The protocol cores have their own simulators (protocol/*/sim_test.go);
// they stop at the core's boundary. The bugs that remain live around the
// cores: leases and fencing, configurations that arrive late, snapshot
// transfers, retried requests and the dedup table, stale routes. Here the
// unit of simulation is the node, as in FoundationDB's and TigerBeetle's
// simulators.
//
// What is simulated:
//
//   - Time. One step is one millisecond of a clock that only the world
//     advances; every replica reads it (Options.Now) and is ticked by the
//     world (Replica.TickAt), never by a timer.
//   - The network between replicas: FIFO links with delays (sim.Network),
//     single lost messages, resets and partitions.
//   - The coordinator, modelled on etcd behind coord.Backend, so each
//     node's session is the real coord.Registrar: leases with a TTL that
//     nodes renew every TTL/3, expired by a check that runs every
//     ExpiryCheck; a node-side validity that ends a margin before the
//     lease can expire; keys with revisions and atomic transactions (the
//     create-only registration); the group configuration changed by
//     compare-and-swap, planned by coord.Plan; watches that deliver
//     configurations and a node's own registration late or skip some;
//     outages during which nothing is renewed or changed; and the
//     watchdog's fencing of a process that died.
//   - Nodes that crash (and restart with an empty store and a new
//     incarnation, as lockstep's replicas do), pause (a GC pause or
//     SIGSTOP: nothing is processed, time goes on), or are cut off from
//     their peers, the coordinator, or both, while clients still reach
//     them; and second processes started under a running node's name.
//   - Nodes stopped gracefully, as the server stops on SIGTERM (stop.go):
//     clients drained, the replica retired, a clean-stop record written
//     to the disk if the state is all committed, the lease revoked; the
//     restarted process keeps that state if coord.KeepClean says so, and
//     rejoins on it from the retained log of the tail or primary, or by
//     snapshot (checkpoint replicas cannot retire). The record is lost with unsynced writes at a crash, and
//     its deletion at the next start is not durable at once, as a
//     server's is not.
//   - Clients that write through lockstep.req with request ids, retry
//     after a timeout or an error through whichever node their possibly
//     stale routes name, and read from the node they believe answers
//     reads.
//
// What is checked: every history is linearizable per key (porcupine),
// reads from deposed nodes included; after the faults heal, every client
// finishes, the group serves a write to every key within a bounded time,
// every node is a member (no joiner is stuck), and the members' states
// are byte-identical (LOCKSTEP.DIGEST). The coordinator checks that no
// configuration removes a member whose process runs with a valid lease.
//
// Nothing here reads the wall clock, a global random source, or iterates
// over a map, so a seed replays exactly. The replica runtime is driven on
// one goroutine through its stepping calls; the options that make that
// possible (Spawn, Sleep, Forward, NoWindowWait, Rand, Now) are part of
// replica.Options.
package nodesim
