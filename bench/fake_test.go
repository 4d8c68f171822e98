package bench

import (
	"bufio"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lockstep/lockstep/resp"
)

var keyPattern = regexp.MustCompile(`^key:[0-9]{12,}$`)

// fakeServer is a tiny RESP server for tests: +OK to SET, a bulk to GET,
// and an error to the command named by failCmd.
type fakeServer struct {
	t        *testing.T
	ln       net.Listener
	failCmd  string // answer this command with -ERR injected failure
	batch    int    // hold replies until this many commands arrived (default 1)
	password string // require AUTH with this password first
	dieAfter int64  // close every connection once this many commands arrived
	stall    bool   // read commands but never answer them

	gets, sets, others atomic.Int64
	waits              atomic.Int64
	waitAcks           int // replicas WAIT reports (default: as many as asked)
	total, auths       atomic.Int64
	badKeys, badValues atomic.Int64
	valueSize          int
	maxKey             int

	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// start listens on an OS-chosen port and serves until the test ends.
func (s *fakeServer) start() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.t.Fatal(err)
	}
	s.ln = ln
	s.conns = map[net.Conn]bool{}
	if s.batch == 0 {
		s.batch = 1
	}
	s.wg.Go(s.accept)
	s.t.Cleanup(s.close)
	return ln.Addr().String()
}

func (s *fakeServer) accept() {
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[conn] = true
		s.mu.Unlock()
		s.wg.Go(func() { s.serve(conn) })
	}
}

func (s *fakeServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *fakeServer) serve(conn net.Conn) {
	defer conn.Close()
	rd := resp.NewReader(conn)
	w := bufio.NewWriter(conn)
	authed := s.password == ""
	pending := 0
	for {
		v, err := rd.ReadValue()
		if err != nil || v.Type != '*' || len(v.Array) == 0 {
			return
		}
		if s.dieAfter > 0 && s.total.Add(1) > s.dieAfter {
			return
		}
		name := strings.ToUpper(string(v.Array[0].Str))
		if name == "AUTH" {
			authed = s.auth(w, v.Array)
			w.Flush()
			continue
		}
		if s.stall {
			continue
		}
		s.reply(w, name, v.Array, authed)
		if pending++; pending == s.batch {
			pending = 0
			if w.Flush() != nil {
				return
			}
		}
	}
}

func (s *fakeServer) auth(w *bufio.Writer, args []resp.Value) bool {
	s.auths.Add(1)
	if len(args) == 2 && string(args[1].Str) == s.password {
		w.WriteString("+OK\r\n")
		return true
	}
	w.WriteString("-WRONGPASS invalid password\r\n")
	return false
}

func (s *fakeServer) reply(w *bufio.Writer, name string, args []resp.Value, authed bool) {
	switch {
	case !authed:
		w.WriteString("-NOAUTH Authentication required.\r\n")
		return
	case name == "GET":
		s.gets.Add(1)
	case name == "SET":
		s.sets.Add(1)
		if len(args) != 3 || len(args[2].Str) != s.valueSize {
			s.badValues.Add(1)
		}
	case name == "WAIT":
		s.replyWait(w, args)
		return
	default:
		s.others.Add(1)
	}
	if len(args) < 2 || !keyPattern.Match(args[1].Str) || string(args[1].Str) > s.maxKeyString() {
		s.badKeys.Add(1)
	}
	switch name {
	case s.failCmd:
		w.WriteString("-ERR injected failure\r\n")
	case "GET":
		w.WriteString("$5\r\nhello\r\n")
	default:
		w.WriteString("+OK\r\n")
	}
}

// replyWait answers WAIT n 0 with n, or with waitAcks when set.
func (s *fakeServer) replyWait(w *bufio.Writer, args []resp.Value) {
	s.waits.Add(1)
	acks := string(args[1].Str)
	if s.waitAcks > 0 {
		acks = strconv.Itoa(s.waitAcks)
	}
	w.WriteString(":" + acks + "\r\n")
}

// maxKeyString is the largest key the configured keyspace may produce;
// keys compare as strings because they are zero-padded to one width.
func (s *fakeServer) maxKeyString() string {
	return string(appendKey(nil, s.maxKey-1))
}

// recordKeys serves one connection for n commands and returns each as
// "NAME key", in the order it arrived.
func recordKeys(ln net.Listener, n int) []string {
	conn, err := ln.Accept()
	if err != nil {
		return nil
	}
	defer conn.Close()
	rd := resp.NewReader(conn)
	var got []string
	for range n {
		v, err := rd.ReadValue()
		if err != nil || len(v.Array) < 2 {
			return got
		}
		got = append(got, string(v.Array[0].Str)+" "+string(v.Array[1].Str))
		if _, err := conn.Write([]byte("+OK\r\n")); err != nil {
			return got
		}
	}
	return got
}
