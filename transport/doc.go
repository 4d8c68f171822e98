// Package transport carries protocol messages and snapshot streams between
// lockstep nodes over framed TCP.
//
// Replicas exchange small messages at a high rate with their neighbours
// (updates flow head to tail, acks flow back) and now and then stream a large
// snapshot to a joining node. The protocol cores above are loss-tolerant: they
// retransmit after a reconnect. So the transport promises only this: ordered
// delivery within one connection, high throughput through batching, bounded
// memory, automatic reconnects, and fencing against nodes of another cluster.
// Payloads are opaque bytes; their encoding belongs to the caller.
//
// # Why framed TCP and not gRPC
//
// A replication link is one ordered stream of small, already-encoded
// messages. gRPC would add HTTP/2 framing, per-message headers, flow-control
// windows of its own and, for a streaming RPC, a goroutine hand-off and an
// allocation per message, while its features (request routing, metadata,
// deadlines per call, code generation) have nothing to work on here. Framed TCP
// lets one writer goroutine per peer turn every message queued since its last
// write into a single write system call, and lets the reader hand each payload
// to the handler straight out of its read buffer, so the hot path does not
// allocate. It also keeps the dependency list and the failure modes short:
// a connection either works or is closed and dialled again.
//
// # Connections
//
// Message connections are one-directional. A node's messages to a peer travel
// over the connection it dialled itself, and the peer's messages to it over the
// peer's own dialled connection, so each side owns its writer and ordering needs
// no coordination. A node accepts at most one message connection per peer name:
// a newer one replaces the older, so a restarted peer is heard at once.
//
// Each stream (OpenStream) gets a dedicated connection, so a multi-gigabyte
// snapshot never delays the small messages queued behind it.
//
// # Wire format
//
// The dialler opens with a handshake:
//
//	"LKST" | version (1 byte) | kind (1 byte: 1 messages, 2 stream) |
//	uvarint len | cluster id | uvarint len | sender name
//
// The acceptor answers with a status byte: 0 for ok, or an error code followed
// by a uvarint-length-prefixed message, after which it closes the connection.
// A message connection then carries frames of uvarint length | payload from the
// dialler to the acceptor and nothing back. A stream connection carries one
// request frame of the same form, then response chunks of
// type (1 byte) | length (4 bytes, big-endian) | data, where the type is data,
// end or error; a stream that ends without an end chunk is reported as
// truncated, never as a short success.
package transport
