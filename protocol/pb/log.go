package pb

// entryLog holds the consecutive entries base+1 .. last that a replica must
// keep: at the primary, those some peer has not acknowledged yet; at a
// backup, those above the primary's commit point, which it needs if it is
// promoted; everywhere, those received but not applied yet.
//
// Trimming reslices the front away instead of copying, so the backing array
// is reclaimed the next time append has to grow it; trimmed slots are zeroed
// first so their Data can be collected at once.
type entryLog struct {
	base uint64 // seq of the newest entry already dropped (or restored)
	ents []Entry
}

// last is the seq of the newest entry the log has ever held.
func (l *entryLog) last() uint64 { return l.base + uint64(len(l.ents)) }

// append adds e, which must carry seq last()+1.
func (l *entryLog) append(e Entry) { l.ents = append(l.ents, e) }

// slice returns a copy of the headers of entries lo..hi (inclusive); the
// caller guarantees base < lo <= hi <= last(). The Data slices are shared:
// entries are immutable once logged.
func (l *entryLog) slice(lo, hi uint64) []Entry {
	return append([]Entry(nil), l.ents[lo-l.base-1:hi-l.base]...)
}

// trim drops every entry with seq <= seq.
func (l *entryLog) trim(seq uint64) {
	if seq <= l.base {
		return
	}
	n := min(seq-l.base, uint64(len(l.ents)))
	clear(l.ents[:n])
	l.ents = l.ents[n:]
	l.base += n
	if len(l.ents) == 0 {
		l.ents = nil
	}
}

// reset empties the log and makes seq its base, as after a snapshot.
func (l *entryLog) reset(seq uint64) {
	clear(l.ents)
	l.ents = nil
	l.base = seq
}
