package transport

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Defaults for the zero fields of Config.
const (
	DefaultMaxFrame     = 64 << 20
	DefaultQueueBytes   = 64 << 20
	DefaultDialTimeout  = 5 * time.Second
	DefaultWriteTimeout = 10 * time.Second
)

// Reconnect backoff bounds: after a failed connect or write, the next dial to
// that peer waits minBackoff, doubling per consecutive failure up to
// maxBackoff, so a dead peer costs at most a few dials a second.
const (
	minBackoff = 10 * time.Millisecond
	maxBackoff = 500 * time.Millisecond
)

// Config configures a Transport. Zero fields take their defaults.
type Config struct {
	// Name is this node's name, sent in every handshake. Required.
	Name string
	// ClusterID fences clusters apart: peers with another cluster id are
	// refused, and both sides log an error wrapping ErrWrongCluster.
	// Required.
	ClusterID string
	// Listen is the host:port peers dial; ":0" or "127.0.0.1:0" picks a free
	// port (see Transport.Addr).
	Listen string
	// Resolve returns the current address of a peer. It is called at each
	// connect and reconnect, so a peer that restarts on a new address is
	// found once Resolve knows it. It may be called from any goroutine.
	// Required.
	Resolve func(name string) (addr string, ok bool)
	// Handler is called for each inbound message, in order per sending
	// peer, from that peer's connection reader goroutine; calls for
	// different peers run concurrently, calls for one peer never do.
	// payload is valid only during the call. A slow Handler slows only its
	// peer's connection (TCP pushes back on the sender). Nil discards
	// messages.
	Handler func(from string, payload []byte)
	// BurstDone, if set, is called on the same goroutine as Handler after
	// the messages that arrived together from one peer have been handled,
	// just before the reader blocks for more. A receiver can step each
	// message in Handler and act on all of them at once here, turning a
	// burst of small messages into one batch of effects.
	BurstDone func(from string)
	// Snapshot serves a stream request (OpenStream on the peer) by writing
	// the response to w; w is valid only during the call. ctx is cancelled
	// when the requester goes away or the Transport closes. A non-nil error
	// reaches the requester as a Read error wrapping ErrRemote. Each stream
	// is served on its own goroutine. Nil refuses streams with
	// ErrNoSnapshot.
	Snapshot func(ctx context.Context, from string, req []byte, w io.Writer) error
	// MaxFrame is the largest payload accepted (default 64 MiB). An inbound
	// frame above it closes that connection with an error; Send and
	// OpenStream refuse payloads above it.
	MaxFrame int
	// QueueBytes bounds the bytes queued for one peer, including the batch
	// being written (default 64 MiB). Send drops beyond it.
	QueueBytes int
	// DialTimeout bounds a connect plus handshake (default 5 s).
	DialTimeout time.Duration
	// WriteTimeout bounds one write to a peer; a peer that does not read for
	// that long is treated as failed (default 10 s).
	WriteTimeout time.Duration
	// Logger receives connection events; nil discards them.
	Logger *slog.Logger
	// Faults, if set, drops and delays outbound messages to simulate an
	// unreliable network in tests and chaos runs. Nil is a perfect
	// network. The Transport copies it at Listen.
	Faults *Faults
}

// withDefaults validates cfg and fills its zero fields.
func (cfg Config) withDefaults() (Config, error) {
	switch {
	case cfg.Name == "":
		return cfg, fmt.Errorf("%w: Name is empty", ErrInvalidConfig)
	case cfg.ClusterID == "":
		return cfg, fmt.Errorf("%w: ClusterID is empty", ErrInvalidConfig)
	case cfg.Resolve == nil:
		return cfg, fmt.Errorf("%w: Resolve is nil", ErrInvalidConfig)
	case len(cfg.Name) > maxHelloString || len(cfg.ClusterID) > maxHelloString:
		return cfg, fmt.Errorf("%w: Name or ClusterID longer than %d bytes", ErrInvalidConfig, maxHelloString)
	case cfg.MaxFrame < 0 || cfg.QueueBytes < 0 || cfg.DialTimeout < 0 || cfg.WriteTimeout < 0:
		return cfg, fmt.Errorf("%w: negative limit", ErrInvalidConfig)
	}
	if cfg.Faults != nil {
		if err := cfg.Faults.validate(); err != nil {
			return cfg, err
		}
	}
	if cfg.MaxFrame == 0 {
		cfg.MaxFrame = DefaultMaxFrame
	}
	if cfg.QueueBytes == 0 {
		cfg.QueueBytes = DefaultQueueBytes
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.Handler == nil {
		cfg.Handler = func(string, []byte) {}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}
