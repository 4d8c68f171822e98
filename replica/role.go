package replica

import (
	"fmt"
	"net"
	"strconv"

	"github.com/lockstep/lockstep/resp"
)

// AppendRole appends the reply to ROLE in Redis's shape, so tools that
// know Redis replication can read a lockstep group: the node that orders
// writes (head or primary) is the master, with its commit point as the
// offset and the other members and the joiner as replicas with the
// applied seqs they last published; every other node is a replica of
// it, "connected" while it serves and "sync" while it catches up.
func (r *Replica) AppendRole(out []byte) []byte {
	others, orderer := r.routes.peers(r.opts.Name)
	st := r.Status()
	if r.Role().Orders() {
		out = resp.AppendArray(out, 3)
		out = resp.AppendBulkString(out, "master")
		out = resp.AppendInt(out, int64(st.Commit))
		out = resp.AppendArray(out, len(others))
		for _, p := range others {
			host, port := splitAddr(p.addr)
			out = resp.AppendArray(out, 3)
			out = resp.AppendBulkString(out, host)
			out = resp.AppendBulkString(out, port)
			out = resp.AppendBulkString(out, strconv.FormatUint(p.applied, 10))
		}
		return out
	}
	host, port := splitAddr(orderer.addr)
	portNum, _ := strconv.Atoi(port)
	state := "connected"
	if r.Ready() != nil {
		state = "sync"
	}
	out = resp.AppendArray(out, 5)
	out = resp.AppendBulkString(out, "slave")
	out = resp.AppendBulkString(out, host)
	out = resp.AppendInt(out, int64(portNum))
	out = resp.AppendBulkString(out, state)
	return resp.AppendInt(out, int64(st.Applied))
}

// appendRedisReplication appends the lines of Redis's INFO replication
// that describe the same: connected_slaves and slaveN at the master,
// master_host, master_port and master_link_status elsewhere.
func (r *Replica) appendRedisReplication(b []byte, st Status) []byte {
	others, orderer := r.routes.peers(r.opts.Name)
	if r.Role().Orders() {
		b = fmt.Appendf(b, "connected_slaves:%d\r\n", len(others))
		for i, p := range others {
			host, port := splitAddr(p.addr)
			b = fmt.Appendf(b, "slave%d:ip=%s,port=%s,state=online,offset=%d,lag=0\r\n", i, host, port, p.applied)
		}
		return fmt.Appendf(b, "master_repl_offset:%d\r\n", st.Commit)
	}
	host, port := splitAddr(orderer.addr)
	link := "up"
	if r.Ready() != nil {
		link = "down"
	}
	return fmt.Appendf(b, "master_host:%s\r\nmaster_port:%s\r\nmaster_link_status:%s\r\nslave_repl_offset:%d\r\nslave_read_only:1\r\n",
		host, port, link, st.Applied)
}

// splitAddr splits host:port, or returns addr and "0" if it cannot.
func splitAddr(addr string) (host, port string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, "0"
	}
	return h, p
}
