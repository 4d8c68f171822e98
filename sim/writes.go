package sim

import "slices"

// Writes is a simulation's oracle of the writes its clients made: which
// entry each one proposed at which seq, which entry was committed at each
// seq (by whichever replica), and which writes are in doubt because their
// client gave up when the replica it waited on crashed.
//
// It settles a write in doubt as soon as its own entry commits, returning
// it in the History: that is when its client would have had its reply had
// it waited, and from then on every read must see it. The writes still in
// doubt at the end never committed; Settle forgets them, so that
// porcupine need not try every place for them.
//
// Writes is not safe for concurrent use; a simulation is one goroutine.
type Writes struct {
	hist      *History
	recs      []writeRec
	givenUp   []int    // indexes in recs, in the order their clients gave up
	committed []uint64 // committed[s]: the digest of the entry committed at s, 0 if none yet
	max       uint64
}

// writeRec is where a recorded write went: its operation in the history,
// the seq its replica gave it, and its entry.
type writeRec struct {
	op     OpID
	seq    uint64
	digest uint64
}

// NewWrites returns an oracle that settles writes in h.
func NewWrites(h *History) *Writes {
	return &Writes{hist: h}
}

// Add records that operation op proposed the entry data at seq and
// returns the write's index, for GiveUp.
func (ws *Writes) Add(op OpID, seq uint64, data []byte) int {
	ws.recs = append(ws.recs, writeRec{op: op, seq: seq, digest: EntryDigest(data)})
	return len(ws.recs) - 1
}

// Commit records that the entry with digest was committed at seq. It
// reports whether that settled a write in doubt, and false in ok if
// another entry was committed at seq before: two replicas committed
// different histories.
func (ws *Writes) Commit(seq, digest uint64) (settled, ok bool) {
	for uint64(len(ws.committed)) <= seq {
		ws.committed = append(ws.committed, 0)
	}
	switch ws.committed[seq] {
	case 0:
		ws.committed[seq] = digest
		ws.max = max(ws.max, seq)
		return ws.settle(seq, digest), true
	case digest:
		return false, true
	}
	return false, false
}

// settle returns the write in doubt whose entry was just committed at seq.
func (ws *Writes) settle(seq, digest uint64) bool {
	for i, k := range ws.givenUp {
		if r := ws.recs[k]; r.seq == seq && r.digest == digest {
			ws.hist.Return(r.op, nil)
			ws.givenUp = slices.Delete(ws.givenUp, i, i+1)
			return true
		}
	}
	return false
}

// Conflicts reports whether an entry other than the one with digest was
// committed at seq.
func (ws *Writes) Conflicts(seq, digest uint64) bool {
	return seq < uint64(len(ws.committed)) && ws.committed[seq] != 0 && ws.committed[seq] != digest
}

// MaxCommitted is the highest seq committed so far.
func (ws *Writes) MaxCommitted() uint64 { return ws.max }

// GiveUp records that the client of write i stopped waiting. A write whose
// entry is committed already (by another replica than the one its client
// waited on) is returned at once, and GiveUp reports true; any other is in
// doubt until its entry commits.
func (ws *Writes) GiveUp(i int) bool {
	r := ws.recs[i]
	if r.seq < uint64(len(ws.committed)) && ws.committed[r.seq] == r.digest {
		ws.hist.Return(r.op, nil)
		return true
	}
	ws.givenUp = append(ws.givenUp, i)
	return false
}

// Settle forgets every write still in doubt and returns how many it
// forgot. A simulation calls it after its quiet steps, when every entry
// that will ever commit has: a write in doubt then never took effect, and
// no read can have seen it, if the protocol reads only what is committed.
func (ws *Writes) Settle() int {
	n := len(ws.givenUp)
	for _, k := range ws.givenUp {
		ws.hist.Forget(ws.recs[k].op)
	}
	ws.givenUp = nil
	return n
}
