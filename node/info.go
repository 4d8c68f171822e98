package node

import (
	"fmt"

	"github.com/lockstep/lockstep/statemachine"
	"github.com/lockstep/lockstep/storage"
)

// Commands lists the state machine's commands for the front end.
func (n *Node) Commands() []statemachine.Command { return n.sm.Commands() }

// AppendInfo appends the INFO sections the runtime owns: keyspace,
// persistence and replication.
func (n *Node) AppendInfo(section string, b []byte) ([]byte, bool) {
	switch section {
	case "keyspace":
		b = storage.AppendKeyspaceInfo(b, n.store)
	case "persistence":
		b = storage.AppendPersistenceInfo(b, n.store)
		b = fmt.Appendf(b, "lockstep_fsync:%s\r\nlockstep_durable_seq:%d\r\n", n.fsync, n.commit.durable.Load())
	case "replication":
		b = fmt.Appendf(b, "role:master\r\nconnected_slaves:0\r\nlockstep_protocol:none\r\nlockstep_applied_seq:%d\r\n", n.commit.latest.Load())
	default:
		return b, false
	}
	return b, true
}
