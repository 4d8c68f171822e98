// Package backup takes a consistent backup of a live lockstep cluster into
// a file and seeds a new cluster from one. It holds four pieces: the file
// format (Writer, Reader), the data digest both sides compute (Digest),
// the RESP stream a node answers LOCKSTEP.BACKUP with (StreamWriter on the
// node, StreamReader in the client), and the two client operations behind
// `lockstep backup` and `lockstep restore` (Take, Restore).
//
// What a backup holds: every user key with its value and absolute expiry
// time, as of one commit point of the source cluster (one applied seq:
// every write acknowledged before the backup started and nothing after
// that seq). What it leaves out: the dedup (exactly-once) records, which
// answer a client's retry of a request it already sent, and mean nothing
// to a new cluster those clients never wrote to; and the seq itself as
// state, since the restored cluster numbers its writes from its own
// start. The node side is in package replica, which decides which node's
// state is committed (see Replica.Stream).
package backup
