package replicatest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"time"

	"github.com/lockstep/lockstep/coord"
	"github.com/lockstep/lockstep/replica"
	"github.com/lockstep/lockstep/resp"
)

// View is a configuration as a test states it: members by name, head or
// primary first, and at most one joining node.
type View struct {
	Members []string
	Joining string
	// To names the replicas that hear of the configuration; nil means
	// every replica. A replica left out is one cut off from the
	// coordinator: it keeps running in the configuration it had.
	To []string
}

// Configure makes v the group's next configuration (the epoch after the
// last one) and hands it to the replicas v.To names, as the
// coordinator's watch would. It returns the configuration.
func (c *Cluster) Configure(v View) (coord.Config, error) {
	member := func(name string) (coord.Member, error) {
		n := c.Node(name)
		if n == nil {
			return coord.Member{}, fmt.Errorf("%w: %s", ErrUnknownNode, name)
		}
		return coord.Member{Name: n.Name, Incarnation: n.Incarnation}, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cfg := coord.Config{Epoch: c.cfg.Epoch + 1, Protocol: c.opts.Protocol}
	for _, name := range v.Members {
		m, err := member(name)
		if err != nil {
			return coord.Config{}, err
		}
		cfg.Members = append(cfg.Members, m)
	}
	if v.Joining != "" {
		m, err := member(v.Joining)
		if err != nil {
			return coord.Config{}, err
		}
		cfg.Joining = &m
	}
	to := c.nodes
	if v.To != nil {
		to = nil
		for _, name := range v.To {
			n := c.Node(name)
			if n == nil {
				return coord.Config{}, fmt.Errorf("%w: %s", ErrUnknownNode, name)
			}
			to = append(to, n)
		}
	}
	for _, n := range to {
		n.Replica.SetConfig(cfg)
	}
	c.cfg = cfg
	return cfg, nil
}

// WaitFor polls cond until it holds, or returns ErrTimeout (with what)
// when ctx ends first.
func WaitFor(ctx context.Context, what string, cond func() bool) error {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s: %w", ErrTimeout, what, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// WaitRoles waits until each named replica runs cfg's epoch in the role
// given (replica.Role's words: head, tail, primary, backup, ...).
func (c *Cluster) WaitRoles(ctx context.Context, epoch uint64, roles map[string]string) error {
	for name, role := range roles {
		n := c.Node(name)
		if n == nil {
			return fmt.Errorf("%w: %s", ErrUnknownNode, name)
		}
		err := WaitFor(ctx, fmt.Sprintf("%s to be %s in epoch %d", name, role, epoch), func() bool {
			st := n.Replica.Status()
			return st.Epoch == epoch && st.Role == role
		})
		if err != nil {
			st := n.Replica.Status()
			return fmt.Errorf("%w (it is %s in epoch %d)", err, st.Role, st.Epoch)
		}
	}
	return nil
}

// Write runs a write on this replica through Replica.Write (which
// forwards it if this replica does not order writes) and waits for its
// gate, as the RESP server does before it releases a reply. An error
// means no reply may be sent; a refusal in RESP (TRYAGAIN) is a Value.
func (n *Node) Write(ctx context.Context, args ...string) (resp.Value, error) {
	out, gate, err := n.Replica.Write(byteArgs(args), nil)
	return n.settle(ctx, out, gate, err)
}

// Read is Write for a read, through Replica.Read.
func (n *Node) Read(ctx context.Context, args ...string) (resp.Value, error) {
	out, gate, err := n.Replica.Read(byteArgs(args), nil)
	return n.settle(ctx, out, gate, err)
}

func (n *Node) settle(ctx context.Context, out []byte, gate uint64, err error) (resp.Value, error) {
	if err != nil {
		return resp.Value{}, err
	}
	if err := n.Replica.Wait(ctx, gate); err != nil {
		return resp.Value{}, err
	}
	return resp.NewReader(bytes.NewReader(out)).ReadValue()
}

func byteArgs(args []string) [][]byte {
	b := make([][]byte, len(args))
	for i, a := range args {
		b[i] = []byte(a)
	}
	return b
}

// Do sends one command to the replica's RESP server over a new
// connection and returns the reply: the whole client path, forwarding
// included.
func (n *Node) Do(ctx context.Context, args ...string) (resp.Value, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", n.Addr)
	if err != nil {
		return resp.Value{}, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	w := bufio.NewWriter(conn)
	if _, err := w.Write(resp.AppendCommandStrings(nil, args...)); err != nil {
		return resp.Value{}, err
	}
	if err := w.Flush(); err != nil {
		return resp.Value{}, err
	}
	return resp.NewReader(conn).ReadValue()
}

// Roles returns the role words of a configuration's members for the
// cluster's protocol: head, middles and tail for a chain, a primary and
// backups otherwise (a single member of a chain is "single").
func (c *Cluster) Roles(cfg coord.Config) map[string]string {
	roles := map[string]string{}
	for i, m := range cfg.Members {
		switch {
		case c.opts.Protocol != replica.ProtocolChain && i == 0:
			roles[m.Name] = replica.RolePrimary.String()
		case c.opts.Protocol != replica.ProtocolChain:
			roles[m.Name] = replica.RoleBackup.String()
		case len(cfg.Members) == 1:
			roles[m.Name] = replica.RoleSingle.String()
		case i == 0:
			roles[m.Name] = replica.RoleHead.String()
		case i == len(cfg.Members)-1:
			roles[m.Name] = replica.RoleTail.String()
		default:
			roles[m.Name] = replica.RoleMiddle.String()
		}
	}
	return roles
}
