package server

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lockstep/lockstep/resp"
	"github.com/lockstep/lockstep/statemachine"
)

// RedisVersion is the Redis version lockstep reports in INFO and HELLO
// replies for clients that gate features on it; its command set is a
// subset of that version's.
const RedisVersion = "7.2.0"

func (c *conn) cmdClient(args [][]byte) {
	sub := strings.ToLower(string(args[1]))
	switch {
	case sub == "id" && len(args) == 2:
		c.out = resp.AppendInt(c.out, c.id)
	case sub == "getname" && len(args) == 2:
		if name := c.clientName(); name != "" {
			c.out = resp.AppendBulkString(c.out, name)
		} else {
			c.out = resp.AppendNull(c.out)
		}
	case sub == "setname" && len(args) == 3:
		if !validClientName(args[2]) {
			c.out = resp.AppendError(c.out, "ERR Client names cannot contain spaces, newlines or special characters.")
			return
		}
		c.setName(args[2])
		c.out = resp.AppendOK(c.out)
	case sub == "setinfo" && len(args) == 4:
		c.out = resp.AppendOK(c.out)
	case sub == "list" && len(args) == 2:
		c.out = resp.AppendBulkString(c.out, c.srv.clientList())
	case sub == "info" && len(args) == 2:
		c.out = resp.AppendBulkString(c.out, c.describe(time.Now()))
	case isClientSub(sub):
		c.out = resp.AppendError(c.out, resp.ArityError("client|"+sub))
	default:
		c.out = resp.AppendError(c.out, resp.UnknownSubcommandError(args[1], "CLIENT"))
	}
}

func isClientSub(s string) bool {
	switch s {
	case "id", "getname", "setname", "setinfo", "list", "info":
		return true
	}
	return false
}

// describe formats the connection as one CLIENT LIST line.
func (c *conn) describe(now time.Time) string {
	return fmt.Sprintf("id=%d addr=%s laddr=%s name=%s age=%d db=0 user=default\n",
		c.id, c.nc.RemoteAddr(), c.nc.LocalAddr(), c.clientName(), int(now.Sub(c.created).Seconds()))
}

func (s *Server) clientList() string {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	sort.Slice(conns, func(i, j int) bool { return conns[i].id < conns[j].id })
	var b strings.Builder
	now := time.Now()
	for _, c := range conns {
		b.WriteString(c.describe(now))
	}
	return b.String()
}

// cmdCommand answers COMMAND, COMMAND COUNT, COMMAND INFO, COMMAND LIST and
// COMMAND DOCS, enough for redis-cli and client libraries to start.
func (c *conn) cmdCommand(args [][]byte) {
	names := c.srv.sortedNames()
	if len(args) == 1 {
		c.out = resp.AppendArray(c.out, len(names))
		for _, n := range names {
			c.out = appendCommandInfo(c.out, c.srv.table[n].info)
		}
		return
	}
	switch strings.ToLower(string(args[1])) {
	case "count":
		c.out = resp.AppendInt(c.out, int64(len(names)))
	case "list":
		c.out = resp.AppendArray(c.out, len(names))
		for _, n := range names {
			c.out = resp.AppendBulkString(c.out, n)
		}
	case "info":
		c.out = resp.AppendArray(c.out, len(args)-2)
		for _, a := range args[2:] {
			if cmd, ok := c.srv.table[strings.ToLower(string(a))]; ok {
				c.out = appendCommandInfo(c.out, cmd.info)
			} else {
				c.out = resp.AppendNullArray(c.out)
			}
		}
	case "docs":
		// An empty map: clients then run without per-command hints.
		c.out = resp.AppendArray(c.out, 0)
	default:
		c.out = resp.AppendError(c.out, resp.UnknownSubcommandError(args[1], "COMMAND"))
	}
}

func (s *Server) sortedNames() []string {
	names := make([]string, 0, len(s.table))
	for n := range s.table {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// appendCommandInfo writes Redis 7's ten-field COMMAND entry.
func appendCommandInfo(b []byte, info statemachine.Command) []byte {
	b = resp.AppendArray(b, 10)
	b = resp.AppendBulkString(b, info.Name)
	b = resp.AppendInt(b, int64(info.Arity))
	var flags []string
	if info.Kind == statemachine.KindWrite {
		flags = append(flags, "write")
	} else if info.FirstKey > 0 {
		flags = append(flags, "readonly")
	}
	if info.Fast {
		flags = append(flags, "fast")
	}
	b = resp.AppendArray(b, len(flags))
	for _, f := range flags {
		b = resp.AppendSimple(b, f)
	}
	b = resp.AppendInt(b, int64(info.FirstKey))
	b = resp.AppendInt(b, int64(info.LastKey))
	b = resp.AppendInt(b, int64(info.KeyStep))
	for range 4 { // ACL categories, tips, key specs, subcommands
		b = resp.AppendArray(b, 0)
	}
	return b
}

// cmdConfig answers CONFIG GET for the few parameters benchmarks and tools
// read at start; lockstep is configured by flags, so CONFIG SET is refused.
func (c *conn) cmdConfig(args [][]byte) {
	switch strings.ToLower(string(args[1])) {
	case "get":
		var pairs []string
		for _, pat := range args[2:] {
			for _, kv := range configParams(c.srv) {
				if matchSimple(strings.ToLower(string(pat)), kv[0]) {
					pairs = append(pairs, kv[0], kv[1])
				}
			}
		}
		c.out = resp.AppendArray(c.out, len(pairs))
		for _, p := range pairs {
			c.out = resp.AppendBulkString(c.out, p)
		}
	case "set", "rewrite", "resetstat":
		c.out = resp.AppendError(c.out, "ERR lockstep is configured by command-line flags; CONFIG "+strings.ToUpper(string(args[1]))+" is not supported")
	default:
		c.out = resp.AppendError(c.out, resp.UnknownSubcommandError(args[1], "CONFIG"))
	}
}

func configParams(s *Server) [][2]string {
	return [][2]string{
		{"appendonly", "no"},
		{"databases", "1"},
		{"maxclients", strconv.Itoa(s.cfg.MaxClients)},
		{"maxmemory", "0"},
		{"proto-max-bulk-len", strconv.FormatInt(s.cfg.Limits.MaxBulkLen, 10)},
		{"save", ""},
	}
}

// matchSimple supports the two CONFIG GET patterns tools use: an exact
// name and "*".
func matchSimple(pat, name string) bool { return pat == "*" || pat == name }

var defaultInfoSections = []string{"server", "clients", "memory", "persistence", "stats", "replication", "keyspace"}

func (c *conn) cmdInfo(args [][]byte) {
	sections := defaultInfoSections
	if len(args) > 1 {
		sections = nil
		for _, a := range args[1:] {
			switch s := strings.ToLower(string(a)); s {
			case "all", "everything", "default":
				sections = defaultInfoSections
			default:
				sections = append(sections, s)
			}
		}
	}
	var b []byte
	for _, sec := range sections {
		b = c.srv.appendInfo(sec, b)
	}
	c.out = resp.AppendBulk(c.out, b)
}

func (s *Server) appendInfo(section string, b []byte) []byte {
	start := len(b)
	if len(b) > 0 {
		b = append(b, "\r\n"...)
	}
	b = append(b, "# "+strings.ToUpper(section[:1])+section[1:]+"\r\n"...)
	switch section {
	case "server":
		b = s.appendServerInfo(b)
	case "clients":
		b = fmt.Appendf(b, "connected_clients:%d\r\nmaxclients:%d\r\nblocked_clients:0\r\n", s.Clients(), s.cfg.MaxClients)
	case "memory":
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b = fmt.Appendf(b, "used_memory:%d\r\nused_memory_human:%.2fM\r\nused_memory_sys:%d\r\nmaxmemory:0\r\nmem_allocator:go\r\n", ms.HeapAlloc, float64(ms.HeapAlloc)/(1<<20), ms.Sys)
	case "stats":
		b = fmt.Appendf(b, "total_connections_received:%d\r\ntotal_commands_processed:%d\r\nrejected_connections:%d\r\n", s.accepted.Load(), s.commands.Load(), s.rejected.Load())
	default:
		var ok bool
		if b, ok = s.cfg.Backend.AppendInfo(section, b); !ok {
			return b[:start]
		}
	}
	return b
}

func (s *Server) appendServerInfo(b []byte) []byte {
	up := time.Since(s.started)
	port := ""
	if addr := s.Addr(); addr != nil {
		if i := strings.LastIndexByte(addr.String(), ':'); i >= 0 {
			port = addr.String()[i+1:]
		}
	}
	return fmt.Appendf(b, "redis_version:%s\r\nlockstep_version:%s\r\nredis_mode:standalone\r\nos:%s %s\r\narch_bits:64\r\ngo_version:%s\r\nprocess_id:%d\r\ntcp_port:%s\r\nuptime_in_seconds:%d\r\nuptime_in_days:%d\r\n",
		RedisVersion, s.cfg.Version, runtime.GOOS, runtime.GOARCH, runtime.Version(), os.Getpid(), port, int64(up.Seconds()), int64(up.Hours()/24))
}
