// Package resp is a pure codec for RESP2, the Redis serialization protocol.
//
// The server side parses commands out of byte slices with a Parser and
// appends replies to byte slices with the Append* functions; it does no I/O,
// starts no goroutines and reads no clock, so the connection code owns every
// buffer and every read. The client side encodes commands with AppendCommand
// and decodes replies with a Reader wrapped around any io.Reader; it serves
// the load generator and tests.
//
// Parsing follows Redis's processMultibulkBuffer and processInlineBuffer,
// including their error texts, so that a client sees the same
// "-ERR Protocol error: ..." lines it would see from Redis.
package resp
