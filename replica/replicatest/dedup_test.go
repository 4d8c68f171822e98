package replicatest

import (
	"context"
	"testing"
	"time"
)

// TestRetryAfterFailoverAppliesOnce checks that the dedup table is
// replicated state in every protocol: a client's lockstep.req that
// committed at the head or primary, retried after that replica failed
// and another took over, is answered from the record the new head or
// primary received with the update (or the checkpoint), not applied a
// second time. The retry is made twice: at the new head directly, and
// through another replica's RESP server, which forwards it with the
// client's ids.
func TestRetryAfterFailoverAppliesOnce(t *testing.T) {
	for _, protocol := range protocols {
		t.Run(protocol, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
			defer cancel()
			c := startGroup(t, ctx, protocol)
			expect(t, "first attempt at r1", ":1")(c.Node("r1").Write(ctx, "lockstep.req", "client-a", "1", "INCR", "k"))

			// r1 fails; the coordinator hands its role to r2.
			c.Net.Isolate("r1")
			rest := []string{"r2", "r3"}
			reconfigure(t, ctx, c, View{Members: rest, To: rest})

			expect(t, "retry at the new head r2", ":1")(c.Node("r2").Write(ctx, "lockstep.req", "client-a", "1", "INCR", "k"))
			expect(t, "retry through r3's server", ":1")(c.Node("r3").Do(ctx, "lockstep.req", "client-a", "1", "INCR", "k"))
			expect(t, "GET k after the retries", "$1")(c.Node(reader(protocol, rest)).Read(ctx, "GET", "k"))
			// The table must not refuse the client's next request.
			expect(t, "the client's next request", ":2")(c.Node("r2").Write(ctx, "lockstep.req", "client-a", "2", "INCR", "k"))
		})
	}
}
