package wire

import (
	"errors"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestReceive checks the receiving end of a stream: entries the log holds
// are skipped and reported, the next ones appended to the log and to
// apply, and a gap ends the batch.
func TestReceive(t *testing.T) {
	var l Log
	l.Reset(2)
	apply := []Entry{{Seq: 2}}
	batch := []Entry{{Seq: 2}, {Seq: 3}, {Seq: 4}, {Seq: 3}, {Seq: 6}, {Seq: 5}}
	apply, dup, gap := l.Receive(batch, apply)
	seqs := func(es []Entry) (s []uint64) {
		for _, e := range es {
			s = append(s, e.Seq)
		}
		return s
	}
	if !dup || !gap || l.Last() != 4 || !slices.Equal(seqs(apply), []uint64{2, 3, 4}) {
		t.Fatalf("dup %t, gap %t, last %d, apply %v", dup, gap, l.Last(), seqs(apply))
	}
	apply, dup, gap = l.Receive([]Entry{{Seq: 5}}, nil)
	if dup || gap || l.Last() != 5 || len(apply) != 1 {
		t.Fatalf("dup %t, gap %t, last %d, apply %v", dup, gap, l.Last(), seqs(apply))
	}
}

// TestHeader checks that a header reads back, and that another version
// or a type out of range is refused with the sentinel.
func TestHeader(t *testing.T) {
	errCorrupt := errors.New("corrupt")
	b := AppendHeader(nil, 1, 3, "from", "to", 1<<40)
	h, err := NewDecoder(b, errCorrupt).Header(1, 4)
	if err != nil || h != (Header{Type: 3, From: "from", To: "to", Epoch: 1 << 40}) {
		t.Fatalf("header %+v, %v", h, err)
	}
	for _, tc := range []struct {
		b       []byte
		version byte
		maxType byte
	}{{b, 2, 4}, {b, 1, 2}, {nil, 1, 4}, {[]byte{1, 0}, 1, 4}} {
		if _, err := NewDecoder(tc.b, errCorrupt).Header(tc.version, tc.maxType); !errors.Is(err, errCorrupt) {
			t.Errorf("%x as version %d, types to %d: %v", tc.b, tc.version, tc.maxType, err)
		}
	}
}

// TestLogRing drives a Log and a plain slice with the same random appends,
// trims and resets, across ring growth, wrap-around and shrinking, and
// checks after every step that both hold the same entries.
func TestLogRing(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("LOCKSTEP_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (LOCKSTEP_SEED replays it)", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	var l Log
	var base uint64
	var model []Entry
	shrank := false
	for step := range 4000 {
		before := len(l.ring)
		switch k := r.IntN(100); {
		case k < 60: // bursts of appends, some long enough to grow the ring past keepRing
			for range r.IntN(1 + 300*r.IntN(2) + 3000*r.IntN(2)*r.IntN(2)) {
				e := Entry{Seq: base + uint64(len(model)) + 1, Data: make([]byte, r.IntN(4))}
				l.Append(e)
				model = append(model, e)
			}
		case k < 80:
			seq := base + uint64(r.IntN(len(model)+2))
			l.Trim(seq)
			if seq > base {
				n := min(int(seq-base), len(model))
				model, base = model[n:], base+uint64(n)
			}
		case k < 99:
			size := modelBytes(model)
			seq, limit := base+uint64(r.IntN(len(model)+2)), r.IntN(2*size+1)
			l.TrimOver(seq, limit)
			for len(model) > 0 && model[0].Seq <= seq && size > limit {
				size -= len(model[0].Data)
				model, base = model[1:], base+1
			}
		default:
			base += uint64(r.IntN(5))
			l.Reset(base)
			model = nil
		}
		if l.Base != base || l.Len() != len(model) || l.Last() != base+uint64(len(model)) || l.Bytes() != modelBytes(model) {
			t.Fatalf("step %d: base %d len %d bytes %d, want %d %d %d", step, l.Base, l.Len(), l.Bytes(), base, len(model), modelBytes(model))
		}
		if len(l.ring) > keepRing && l.Len() <= len(l.ring)/8 {
			t.Fatalf("step %d: a ring of %d slots holds %d entries: it should have shrunk", step, len(l.ring), l.Len())
		}
		if len(l.ring) > 0 && len(l.ring) < before {
			shrank = true
		}
		if len(model) == 0 {
			continue
		}
		lo := base + 1 + uint64(r.IntN(len(model)))
		hi := lo + uint64(r.IntN(int(base+uint64(len(model))-lo)+1))
		got, want := l.Slice(lo, hi), model[lo-base-1:hi-base]
		if !slices.EqualFunc(got, want, func(a, b Entry) bool { return a.Seq == b.Seq && slices.Equal(a.Data, b.Data) }) {
			t.Fatalf("step %d: Slice(%d, %d) = %v, want %v", step, lo, hi, got, want)
		}
	}
	if !shrank {
		t.Errorf("the ring never shrank: the test did not reach that path")
	}
}

func modelBytes(ents []Entry) int {
	n := 0
	for _, e := range ents {
		n += len(e.Data)
	}
	return n
}

// TestReceiveRuns checks Receive against a plain loop over batches with
// resent prefixes, repeats, gaps and entries out of order, with apply
// empty (where a run of the batch itself may come back) and not.
func TestReceiveRuns(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for range 5000 {
		var l, ref Log
		l.Reset(10)
		ref.Reset(10)
		var batch []Entry
		for range r.IntN(8) {
			batch = append(batch, Entry{Seq: 8 + uint64(r.IntN(8))})
		}
		var prior []Entry
		if r.IntN(2) == 0 {
			prior = []Entry{{Seq: 1}}
		}
		want := append([]Entry(nil), prior...)
		var wantDup, wantGap bool
		for _, e := range batch {
			if e.Seq <= ref.Last() {
				wantDup = true
				continue
			}
			if e.Seq > ref.Last()+1 {
				wantGap = true
				break
			}
			ref.Append(e)
			want = append(want, e)
		}
		got, dup, gap := l.Receive(batch, append([]Entry(nil), prior...))
		if dup != wantDup || gap != wantGap || l.Last() != ref.Last() || !slices.EqualFunc(got, want, func(a, b Entry) bool { return a.Seq == b.Seq }) {
			t.Fatalf("Receive(%v) after %v = %v %t %t, want %v %t %t", batch, prior, got, dup, gap, want, wantDup, wantGap)
		}
		before := slices.Clone(batch)
		_ = append(got, Entry{Seq: 999})
		if !slices.EqualFunc(batch, before, func(a, b Entry) bool { return a.Seq == b.Seq }) {
			t.Fatalf("appending to Receive's result changed the batch: %v, was %v", batch, before)
		}
	}
}
