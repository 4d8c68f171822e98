package backup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/lockstep/lockstep/resp"
)

// The commands a node serves for backups.
const (
	// Command asks a node for a backup stream: "LOCKSTEP.BACKUP [HERE]".
	// Any node answers it, relaying the stream from the node whose state
	// is committed; HERE, which that relay sends, means "answer from this
	// node or refuse with TRYAGAIN", so a request never travels twice.
	Command = "lockstep.backup"
	// ArgHere is Command's HERE argument.
	ArgHere = "here"
	// DigestCommand asks for the data digest (see Digest) of the group's
	// committed state: "LOCKSTEP.DATADIGEST [alive-after-ms]". It is
	// routed like a read, and answered "seq=<n> keys=<n> sha256=<hex>".
	DigestCommand = "lockstep.datadigest"
)

// Errors of the backup stream, wrapped with %w.
var (
	// ErrRefused: the node answered with an error instead of (the rest
	// of) a backup; the error's text follows.
	ErrRefused = errors.New("lockstep: backup refused")
	// ErrTryAgain: the node cannot serve a backup at the moment (a
	// failover is under way); asking again soon will do.
	ErrTryAgain = errors.New("lockstep: backup not available now")
	// ErrStream: the stream broke off, or a node's answer is not what
	// the backup protocol says.
	ErrStream = errors.New("lockstep: bad backup stream")
)

// The stream a node answers Command with is a sequence of RESP replies,
// which the node ends by closing the connection:
//
//	*8  "backup" <stream version> <seq> <keys> <cluster> <group> <protocol>
//	*1+3n "data" <key> <value> <expireAt> ... (n records, any number of these)
//	*3  "end" <keys> <sha256 hex of the records' Digest>
//
// An error reply may come in place of any of them, and ends the stream. A
// RESP array announces its length first, so the records go in batches
// rather than one array; plain RESP lets any client library read the
// stream, and the end's count and digest, computed on the node from its
// snapshot, let the client prove it received exactly that snapshot.
const (
	streamVersion = "1"
	streamHeader  = "backup"
	streamData    = "data"
	streamEnd     = "end"
	// batchBytes and batchRecords bound one data reply.
	batchBytes   = 256 << 10
	batchRecords = 1024
)

// StreamHeader is what a node says about the backup before the records.
type StreamHeader struct {
	Seq                      uint64
	Keys                     int64 // the records to expect
	Cluster, Group, Protocol string
}

// StreamWriter writes a backup stream. It is not safe for concurrent use.
type StreamWriter struct {
	w     io.Writer
	batch []byte
	n     int
	dig   *Digest
	err   error
}

// NewStreamWriter writes the header of a backup stream to w.
func NewStreamWriter(w io.Writer, h StreamHeader) (*StreamWriter, error) {
	b := resp.AppendArray(nil, 7)
	for _, s := range []string{streamHeader, streamVersion, strconv.FormatUint(h.Seq, 10),
		strconv.FormatInt(h.Keys, 10), h.Cluster, h.Group, h.Protocol} {
		b = resp.AppendBulkString(b, s)
	}
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	return &StreamWriter{w: w, dig: NewDigest(0)}, nil
}

// Add queues one record, writing a batch when it is full.
func (s *StreamWriter) Add(key, value []byte, expireAt int64) error {
	if s.err != nil {
		return s.err
	}
	s.batch = resp.AppendBulk(s.batch, key)
	s.batch = resp.AppendBulk(s.batch, value)
	s.batch = resp.AppendBulk(s.batch, strconv.AppendInt(nil, expireAt, 10))
	s.n++
	s.dig.Add(key, value, expireAt)
	if s.n >= batchRecords || len(s.batch) >= batchBytes {
		return s.flush()
	}
	return nil
}

func (s *StreamWriter) flush() error {
	if s.n == 0 || s.err != nil {
		return s.err
	}
	head := resp.AppendBulkString(resp.AppendArray(nil, 1+3*s.n), streamData)
	if _, s.err = s.w.Write(head); s.err == nil {
		_, s.err = s.w.Write(s.batch)
	}
	s.n = 0
	if cap(s.batch) > 4*batchBytes {
		s.batch = nil
	} else {
		s.batch = s.batch[:0]
	}
	return s.err
}

// End writes the last batch and the end reply.
func (s *StreamWriter) End() error {
	if err := s.flush(); err != nil {
		return err
	}
	b := resp.AppendArray(nil, 3)
	b = resp.AppendBulkString(b, streamEnd)
	b = resp.AppendBulkString(b, strconv.FormatInt(s.dig.Keys(), 10))
	b = resp.AppendBulkString(b, s.dig.String())
	_, s.err = s.w.Write(b)
	return s.err
}

// WriteError ends a stream with an error reply; msg starts with its code
// (ERR, TRYAGAIN).
func WriteError(w io.Writer, msg string) error {
	_, err := w.Write(resp.AppendError(nil, msg))
	return err
}

// StreamReader reads a backup stream and checks its end against what it
// read. It is not safe for concurrent use.
type StreamReader struct {
	rd    *resp.Reader
	h     StreamHeader
	batch []resp.Value
	dig   *Digest
	err   error
}

// NewStreamReader reads the header of the backup stream in r.
func NewStreamReader(r io.Reader) (*StreamReader, error) {
	return newStreamReader(resp.NewReaderLimits(r, resp.Limits{MaxBulkLen: maxField, MaxArgs: 1 << 22}))
}

// newStreamReader reads the header from a connection's reader.
func newStreamReader(rd *resp.Reader) (*StreamReader, error) {
	s := &StreamReader{rd: rd, dig: NewDigest(0)}
	v, err := s.reply(streamHeader, 7)
	if err != nil {
		return nil, err
	}
	a := v.Array
	if string(a[1].Str) != streamVersion {
		return nil, fmt.Errorf("%w: stream version %q, want %s", ErrStream, a[1].Str, streamVersion)
	}
	seq, err1 := strconv.ParseUint(string(a[2].Str), 10, 64)
	keys, err2 := strconv.ParseInt(string(a[3].Str), 10, 64)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("%w: header %s", ErrStream, v)
	}
	s.h = StreamHeader{Seq: seq, Keys: keys, Cluster: string(a[4].Str), Group: string(a[5].Str), Protocol: string(a[6].Str)}
	return s, nil
}

// Header is the stream's header.
func (s *StreamReader) Header() StreamHeader { return s.h }

// reply reads one reply, which must be an array of bulk strings starting
// with tag, of n elements (n < 0: any number).
func (s *StreamReader) reply(tag string, n int) (resp.Value, error) {
	v, err := s.rd.ReadValue()
	if errors.Is(err, io.EOF) {
		// A clean end between replies is still an end before "end"; it
		// must not read as the io.EOF that Next returns for a whole
		// stream.
		err = io.ErrUnexpectedEOF
	}
	switch {
	case err != nil:
		return v, fmt.Errorf("%w: %w", ErrStream, err)
	case v.Type == '-' && bytes.HasPrefix(v.Str, []byte("TRYAGAIN")):
		return v, fmt.Errorf("%w: %s", ErrTryAgain, v.Str)
	case v.Type == '-':
		return v, fmt.Errorf("%w: %s", ErrRefused, v.Str)
	case v.Type != '*' || len(v.Array) == 0 || (n >= 0 && len(v.Array) != n):
		return v, fmt.Errorf("%w: unexpected reply %.80s", ErrStream, v)
	}
	for _, e := range v.Array {
		if e.Type != '$' || e.Null {
			return v, fmt.Errorf("%w: unexpected reply %.80s", ErrStream, v)
		}
	}
	if tag != "" && string(v.Array[0].Str) != tag {
		return v, fmt.Errorf("%w: %q where %q belongs", ErrStream, v.Array[0].Str, tag)
	}
	return v, nil
}

// Next returns the next record, or io.EOF once the end reply has been read
// and its count and digest match the records read.
func (s *StreamReader) Next() (Record, error) {
	for len(s.batch) == 0 && s.err == nil {
		s.err = s.nextBatch()
	}
	if s.err != nil {
		return Record{}, s.err
	}
	exp, err := strconv.ParseInt(string(s.batch[2].Str), 10, 64)
	if err != nil || exp < 0 {
		s.err = fmt.Errorf("%w: expiry %q", ErrStream, s.batch[2].Str)
		return Record{}, s.err
	}
	rec := Record{Key: s.batch[0].Str, Value: s.batch[1].Str, ExpireAt: exp}
	s.batch = s.batch[3:]
	s.dig.Add(rec.Key, rec.Value, rec.ExpireAt)
	return rec, nil
}

// nextBatch reads a data reply into batch, or checks the end reply and
// returns io.EOF.
func (s *StreamReader) nextBatch() error {
	v, err := s.reply("", -1)
	if err != nil {
		return err
	}
	a := v.Array
	switch tag := string(a[0].Str); {
	case tag == streamData && len(a)%3 == 1:
		s.batch = a[1:]
		return nil
	case tag == streamEnd && len(a) == 3:
		if got := strconv.FormatInt(s.dig.Keys(), 10); string(a[1].Str) != got || string(a[2].Str) != s.dig.String() {
			return fmt.Errorf("%w: received %s records with digest %s, the node sent %s with %s",
				ErrStream, got, s.dig, a[1].Str, a[2].Str)
		}
		return io.EOF
	}
	return fmt.Errorf("%w: unexpected reply %.80s", ErrStream, v)
}
