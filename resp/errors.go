package resp

import "errors"

// ErrProtocol is wrapped by every error that reports malformed RESP input,
// so callers can tell a broken stream (which cannot be resynchronized and
// must be closed) from an I/O error with errors.Is.
var ErrProtocol = errors.New("lockstep: protocol error")

// ProtocolError describes malformed input with the text Redis uses for it.
// Error returns exactly "Protocol error: " followed by Msg, the form Redis
// writes after its "ERR " code, so a server replies with
// AppendError(b, "ERR "+err.Error()) or, equivalently, AppendError(b, err.Reply()).
type ProtocolError struct {
	// Msg is Redis's description, such as "invalid bulk length".
	Msg string
}

// Error returns "Protocol error: " followed by Msg.
func (e *ProtocolError) Error() string { return "Protocol error: " + e.Msg }

// Reply returns the error line a server writes before closing the
// connection, without the leading '-' and trailing CRLF.
func (e *ProtocolError) Reply() string { return "ERR " + e.Error() }

// Unwrap makes errors.Is(err, ErrProtocol) hold.
func (e *ProtocolError) Unwrap() error { return ErrProtocol }

// Redis's texts for the protocol errors the parser reports.
const (
	msgInvalidMultibulk = "invalid multibulk length"
	msgInvalidBulk      = "invalid bulk length"
	msgTooBigInline     = "too big inline request"
	msgTooBigMbulk      = "too big mbulk count string"
	msgTooBigBulk       = "too big bulk count string"
	msgUnbalanced       = "unbalanced quotes in request"
)

func protoErr(msg string) error { return &ProtocolError{Msg: msg} }
