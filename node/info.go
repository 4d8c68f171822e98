package node

import (
	"fmt"

	"github.com/lockstep/lockstep/statemachine"
)

// Commands lists the state machine's commands for the front end.
func (n *Node) Commands() []statemachine.Command { return n.sm.Commands() }

// AppendInfo appends the INFO sections the runtime owns: keyspace,
// persistence and replication.
func (n *Node) AppendInfo(section string, b []byte) ([]byte, bool) {
	switch section {
	case "keyspace":
		st := n.store.Stats()
		if st.Keys > 0 {
			b = fmt.Appendf(b, "db0:keys=%d,expires=%d,avg_ttl=0\r\n", st.Keys, st.Expires)
		}
	case "persistence":
		durable := 0
		if n.store.Durable() {
			durable = 1
		}
		b = fmt.Appendf(b, "loading:0\r\naof_enabled:0\r\nlockstep_storage_durable:%d\r\nlockstep_fsync:%s\r\nlockstep_durable_seq:%d\r\n",
			durable, n.fsync, n.commit.durable.Load())
	case "replication":
		b = fmt.Appendf(b, "role:master\r\nconnected_slaves:0\r\nlockstep_protocol:none\r\nlockstep_applied_seq:%d\r\n", n.commit.latest.Load())
	default:
		return b, false
	}
	return b, true
}
