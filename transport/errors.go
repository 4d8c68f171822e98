package transport

import "errors"

// Errors returned or logged by the transport. Callers check them with
// errors.Is; the returned errors wrap them with detail.
var (
	// ErrClosed means the Transport has been closed.
	ErrClosed = errors.New("lockstep: transport closed")
	// ErrWrongCluster means the peer belongs to another cluster, so the
	// connection was refused.
	ErrWrongCluster = errors.New("lockstep: wrong cluster")
	// ErrFrameTooLarge means a frame exceeded the receiver's MaxFrame.
	ErrFrameTooLarge = errors.New("lockstep: frame too large")
	// ErrUnknownPeer means Config.Resolve has no address for the peer.
	ErrUnknownPeer = errors.New("lockstep: unknown peer")
	// ErrHandshake means the other end did not speak this protocol or
	// refused the connection for a reason other than the cluster id.
	ErrHandshake = errors.New("lockstep: handshake failed")
	// ErrRemote wraps an error that the serving peer reported in the middle
	// of a stream.
	ErrRemote = errors.New("lockstep: remote stream error")
	// ErrTruncated means a stream ended without its end marker.
	ErrTruncated = errors.New("lockstep: stream truncated")
	// ErrProtocol means the other end sent something this protocol does
	// not allow.
	ErrProtocol = errors.New("lockstep: transport protocol violation")
	// ErrNoSnapshot means the serving peer has no Config.Snapshot.
	ErrNoSnapshot = errors.New("lockstep: node does not serve streams")
	// ErrInvalidConfig means Listen was given an unusable Config.
	ErrInvalidConfig = errors.New("lockstep: invalid transport config")
)

// errWriterDone is returned by a stream writer used after its Snapshot call
// returned.
var errWriterDone = errors.New("lockstep: stream writer used after Snapshot returned")
