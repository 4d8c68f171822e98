package server

import (
	"crypto/subtle"
	"strconv"
	"strings"

	"github.com/lockstep/lockstep/resp"
	"github.com/lockstep/lockstep/statemachine"
)

type connCommand struct {
	info    statemachine.Command
	handler func(c *conn, args [][]byte)
}

// connCommands are answered by the server without touching replicated
// state. Their metadata appears in COMMAND replies beside the data
// commands'.
var connCommands = []connCommand{
	{local("ping", -1), (*conn).cmdPing},
	{local("echo", 2), (*conn).cmdEcho},
	{local("quit", -1), (*conn).cmdQuit},
	{local("auth", -2), (*conn).cmdAuth},
	{local("hello", -1), (*conn).cmdHello},
	{local("select", 2), (*conn).cmdSelect},
	{local("client", -2), (*conn).cmdClient},
	{local("command", -1), (*conn).cmdCommand},
	{local("info", -1), (*conn).cmdInfo},
	{local("config", -2), (*conn).cmdConfig},
	{local("role", 1), (*conn).cmdRole},
}

// cmdRole answers ROLE: the backend's own answer if it replicates (see
// RoleReporter), else that of a master without replicas.
func (c *conn) cmdRole(_ [][]byte) {
	if rr, ok := c.srv.cfg.Backend.(RoleReporter); ok {
		c.out = rr.AppendRole(c.out)
		return
	}
	out := resp.AppendArray(c.out, 3)
	out = resp.AppendBulkString(out, "master")
	out = resp.AppendInt(out, 0)
	c.out = resp.AppendArray(out, 0)
}

func local(name string, arity int) statemachine.Command {
	return statemachine.Command{Name: name, Arity: arity, Kind: statemachine.KindRead, Fast: true}
}

func (c *conn) cmdPing(args [][]byte) {
	switch len(args) {
	case 1:
		c.out = resp.AppendSimple(c.out, "PONG")
	case 2:
		c.out = resp.AppendBulk(c.out, args[1])
	default:
		c.out = resp.AppendError(c.out, resp.ArityError("ping"))
	}
}

func (c *conn) cmdEcho(args [][]byte) { c.out = resp.AppendBulk(c.out, args[1]) }

func (c *conn) cmdQuit(args [][]byte) {
	c.out = resp.AppendOK(c.out)
	c.quit = true
}

func (c *conn) cmdSelect(args [][]byte) {
	db, err := strconv.Atoi(string(args[1]))
	switch {
	case err != nil:
		c.out = resp.AppendError(c.out, "ERR value is not an integer or out of range")
	case db != 0:
		c.out = resp.AppendError(c.out, "ERR DB index is out of range")
	default:
		c.out = resp.AppendOK(c.out)
	}
}

func (c *conn) cmdAuth(args [][]byte) {
	if len(args) > 3 {
		c.out = resp.AppendError(c.out, "ERR syntax error")
		return
	}
	user, pass := "default", args[len(args)-1]
	if len(args) == 3 {
		user = string(args[1])
	}
	if c.srv.cfg.RequirePass == "" && len(args) == 2 {
		c.out = resp.AppendError(c.out, "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
		return
	}
	if !c.checkPassword(user, pass) {
		c.out = resp.AppendError(c.out, "WRONGPASS invalid username-password pair or user is disabled.")
		return
	}
	c.authed = true
	c.out = resp.AppendOK(c.out)
}

// checkPassword compares in constant time so the reply's timing does not
// leak how much of a guess was right.
func (c *conn) checkPassword(user string, pass []byte) bool {
	want := c.srv.cfg.RequirePass
	if user != "default" {
		return false
	}
	if want == "" {
		return true
	}
	return subtle.ConstantTimeCompare(pass, []byte(want)) == 1
}

// cmdHello implements HELLO [protover [AUTH user pass] [SETNAME name]].
// Only RESP2 is spoken; asking for 3 gets NOPROTO, on which go-redis and
// other clients fall back to RESP2.
func (c *conn) cmdHello(args [][]byte) {
	if len(args) >= 2 {
		ver, err := strconv.Atoi(string(args[1]))
		if err != nil {
			c.out = resp.AppendError(c.out, "ERR Protocol version is not an integer or out of range")
			return
		}
		if ver != 2 {
			c.out = resp.AppendError(c.out, "NOPROTO sorry, this protocol version is not supported.")
			return
		}
	}
	var name []byte
	for i := 2; i < len(args); i++ {
		opt := strings.ToLower(string(args[i]))
		switch {
		case opt == "auth" && i+2 < len(args):
			if !c.checkPassword(string(args[i+1]), args[i+2]) {
				c.out = resp.AppendError(c.out, "WRONGPASS invalid username-password pair or user is disabled.")
				return
			}
			c.authed = true
			i += 2
		case opt == "setname" && i+1 < len(args):
			name = args[i+1]
			i++
		default:
			c.out = resp.AppendError(c.out, "ERR Syntax error in HELLO option '"+string(args[i])+"'")
			return
		}
	}
	if !c.authed {
		c.out = resp.AppendError(c.out, "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
		return
	}
	if name != nil {
		if !validClientName(name) {
			c.out = resp.AppendError(c.out, "ERR Client names cannot contain spaces, newlines or special characters.")
			return
		}
		c.setName(name)
	}
	c.appendHello()
}

func (c *conn) appendHello() {
	out := resp.AppendArray(c.out, 14)
	out = resp.AppendBulkString(out, "server")
	out = resp.AppendBulkString(out, "lockstep")
	out = resp.AppendBulkString(out, "version")
	out = resp.AppendBulkString(out, c.srv.cfg.Version)
	out = resp.AppendBulkString(out, "proto")
	out = resp.AppendInt(out, 2)
	out = resp.AppendBulkString(out, "id")
	out = resp.AppendInt(out, c.id)
	out = resp.AppendBulkString(out, "mode")
	out = resp.AppendBulkString(out, "standalone")
	out = resp.AppendBulkString(out, "role")
	out = resp.AppendBulkString(out, "master")
	out = resp.AppendBulkString(out, "modules")
	c.out = resp.AppendArray(out, 0)
}

func (c *conn) setName(name []byte) {
	s := string(name)
	c.name.Store(&s)
}

func (c *conn) clientName() string {
	if p := c.name.Load(); p != nil {
		return *p
	}
	return ""
}

// validClientName applies Redis's rule: printable ASCII without spaces.
func validClientName(name []byte) bool {
	for _, b := range name {
		if b < '!' || b > '~' {
			return false
		}
	}
	return true
}
