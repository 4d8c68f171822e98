// Package coord is lockstep's coordinator: the replicated master that the
// chain-replication paper assumes and the atomic test-and-set that VMware FT
// keeps on shared storage, built on etcd.
//
// Three etcd features do all the work:
//
//   - Leases are the failure detector. Every node process holds one lease
//     (a [Session]) and registers itself under nodes/<name> with it; when the
//     process dies the lease expires and the key vanishes.
//   - A transaction that compares the configuration key's revision
//     ([CASConfig]) is the only way a group's configuration changes, so two
//     would-be coordinators can never both move the same epoch forward.
//   - Watches deliver news: [WatchConfig] to every node, and node arrivals and
//     departures to the one reconfigurator that won the election
//     ([RunReconfigurator]).
//
// All keys live under /lockstep/<cluster>/:
//
//	id                        cluster id (random hex), created once at bootstrap
//	nodes/<name>              NodeInfo JSON, attached to the node's lease
//	groups/<group>/config     Config JSON
//	groups/<group>/history/<epoch>  Change JSON: when, why, before and after (see History)
//	groups/<group>/election/  reconfigurator election (concurrency.Election)
//
// The decision of what the next configuration should be is the pure function
// [Plan]; everything else in the package is I/O around it.
package coord

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

var (
	// ErrConflict means a compare-and-swap lost: the configuration changed
	// since it was read. Re-read and decide again.
	ErrConflict = errors.New("lockstep: configuration changed concurrently")
	// ErrLeaseLost means the node's lease is gone (expired or revoked) or can
	// no longer be renewed. The process must stop serving and re-register as
	// a new incarnation.
	ErrLeaseLost = errors.New("lockstep: coordinator lease lost")
	// ErrWrongCluster means the data a node holds belongs to another cluster
	// than the one the coordinator describes.
	ErrWrongCluster = errors.New("lockstep: wrong cluster id")
	// ErrNoConfig means the group has no configuration yet (not bootstrapped).
	ErrNoConfig = errors.New("lockstep: no configuration")
	// ErrNoClusterID means the cluster id has not been created yet.
	ErrNoClusterID = errors.New("lockstep: cluster id not set")
	// ErrInvalid means an argument cannot be used: an empty or malformed
	// name, or a configuration that breaks the epoch or membership rules.
	ErrInvalid = errors.New("lockstep: invalid coordinator request")
	// ErrSessionClosed means the session was closed by its owner.
	ErrSessionClosed = errors.New("lockstep: coordinator session closed")
	// ErrNameInUse means another process holds the node name: its
	// registration is attached to a lease that is still renewed. Taking
	// the name over would leave that process serving under a valid lease
	// while its group removed it.
	ErrNameInUse = errors.New("lockstep: node name in use by a live process")
)

// Node states reported in [NodeInfo.State]. The reconfigurator reads only
// StateCaughtUp (to promote a joiner) and StateStopping (never picked as a
// joiner); the rest are for operators.
const (
	StateStarting = "starting"
	StateJoining  = "joining"
	StateCaughtUp = "caughtup"
	StateServing  = "serving"
	StateStopping = "stopping"
)

// Replication protocols a group may run (Config.Protocol).
const (
	ProtocolChain         = "chain"
	ProtocolPrimaryBackup = "primary-backup"
	ProtocolCheckpoint    = "checkpoint"
)

// hasPrimary reports whether protocol runs a primary and backups (as
// opposed to a chain), so a dead primary is replaced by takeover.
func hasPrimary(protocol string) bool {
	return protocol == ProtocolPrimaryBackup || protocol == ProtocolCheckpoint
}

// DefaultProtocol is the replication protocol a group is bootstrapped with
// when [PlanOptions.Protocol] is empty.
const DefaultProtocol = ProtocolChain

// Member identifies one replica of a group. Incarnation is a random id chosen
// at every process start, so a restarted process is a new member that must
// rejoin through state transfer rather than silently resume a position its
// lost memory no longer backs.
type Member struct {
	Name        string `json:"name"`
	Incarnation string `json:"incarnation"`
}

// String returns name/incarnation, the form used in logs and plan reasons.
func (m Member) String() string { return m.Name + "/" + m.Incarnation }

// Config is one group's configuration (its view). Members are in chain order:
// Members[0] is the head (or primary), the last one the tail. Joining is a
// node receiving state transfer; it is not yet part of the chain. Every
// change bumps Epoch by exactly one.
type Config struct {
	Epoch    uint64   `json:"epoch"`
	Protocol string   `json:"protocol"`
	Members  []Member `json:"members"`
	Joining  *Member  `json:"joining,omitempty"`
	// Data maps each member's (and the joiner's) name to the id of the
	// data directory it holds the group's state in (NodeInfo.DataID), for
	// nodes with durable storage. After a total outage it is what lets a
	// process restarted on that directory take its member's place again
	// (see Plan); a node without one can only rejoin by state transfer.
	Data map[string]string `json:"data,omitempty"`
	// Forced counts the recoveries an operator forced (ForceRecovery)
	// without some member's data. Each may have lost committed writes, so
	// the group's history after it is not an extension of the one before:
	// a state a node kept from a clean stop (see KeepClean) rejoins only
	// in the history it was committed in.
	Forced uint64 `json:"forced,omitempty"`
	// Revision is the etcd mod revision the configuration was read at (or
	// written with). CASConfig compares it; it is not stored.
	Revision int64 `json:"-"`
}

// Head returns the first member, or false if there is none.
func (c Config) Head() (Member, bool) {
	if len(c.Members) == 0 {
		return Member{}, false
	}
	return c.Members[0], true
}

// Tail returns the last member, or false if there is none.
func (c Config) Tail() (Member, bool) {
	if len(c.Members) == 0 {
		return Member{}, false
	}
	return c.Members[len(c.Members)-1], true
}

// Index returns m's position in the chain, or -1 if m is not a member. Both
// name and incarnation must match.
func (c Config) Index(m Member) int {
	for i, x := range c.Members {
		if x == m {
			return i
		}
	}
	return -1
}

// clone returns a deep copy, so a plan never aliases the caller's slices.
func (c Config) clone() Config {
	out := c
	out.Members = append([]Member(nil), c.Members...)
	if c.Joining != nil {
		j := *c.Joining
		out.Joining = &j
	}
	out.Data = maps.Clone(c.Data)
	return out
}

// pruneData forgets the data directories of names that are no longer a
// member or the joiner.
func (c *Config) pruneData() {
	for name := range c.Data {
		if !slices.ContainsFunc(c.Members, func(m Member) bool { return m.Name == name }) &&
			(c.Joining == nil || c.Joining.Name != name) {
			delete(c.Data, name)
		}
	}
	if len(c.Data) == 0 {
		c.Data = nil
	}
}

// setData records the data directory of name, if it has one.
func (c *Config) setData(name, id string) {
	if id == "" {
		return
	}
	if c.Data == nil {
		c.Data = map[string]string{}
	}
	c.Data[name] = id
}

// NodeInfo is what a node publishes about itself under nodes/<name>. It is
// attached to the node's lease, so it disappears when the node dies.
type NodeInfo struct {
	Name        string `json:"name"`
	Incarnation string `json:"incarnation"`
	ClientAddr  string `json:"client_addr,omitempty"`
	PeerAddr    string `json:"peer_addr,omitempty"`
	AdminAddr   string `json:"admin_addr,omitempty"`
	Pid         int    `json:"pid,omitempty"`
	// Host is the host name the process runs on, so that `lockstep fence`
	// can tell whether Pid is a process of the host it runs on.
	Host string `json:"host,omitempty"`
	// State is one of the State* constants.
	State string `json:"state"`
	Role  string `json:"role,omitempty"`
	// Epoch is the configuration epoch the node has installed; a joiner's
	// StateCaughtUp counts only for this epoch.
	Epoch   uint64 `json:"epoch"`
	Applied uint64 `json:"applied"`
	// Lag, at a primary, is how far its slowest backup is behind.
	Lag uint64 `json:"lag"`
	// Commit, at the head or primary, is its commit point: the last seq
	// every replica acknowledged (under checkpoint replication, the last
	// checkpoint every backup installed).
	Commit uint64 `json:"commit,omitempty"`
	// Complete means the node is a member holding every entry that may
	// have been acknowledged to a client; only a complete backup may be
	// made primary (see Plan).
	Complete bool `json:"complete,omitempty"`
	// DataID identifies the data directory the node keeps its state in,
	// for durable storage ("" for memory): a random id made when the
	// directory is, so a wiped or replaced directory has another.
	DataID string `json:"data_id,omitempty"`
	// Durable is the applied seq the node found in its data directory when
	// it started, which it kept (it is 0 if the node started empty).
	Durable uint64 `json:"durable,omitempty"`
	// CreateRevision is the etcd revision at which this incarnation
	// registered; it orders nodes by registration. Filled by ListNodes.
	CreateRevision int64 `json:"-"`
}

// Member returns the node's identity as a group member.
func (n NodeInfo) Member() Member { return Member{Name: n.Name, Incarnation: n.Incarnation} }

// NewIncarnation returns a fresh random incarnation id (16 hex digits).
func NewIncarnation() string { return randomHex(8) }

// randomHex returns n random bytes as hex. crypto/rand never fails on the
// platforms Go supports.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// validName rejects names that would escape their place in the key layout.
func validName(kind, s string) error {
	if s == "" || strings.ContainsAny(s, "/\x00") {
		return fmt.Errorf("%w: %s %q must be non-empty and contain no '/'", ErrInvalid, kind, s)
	}
	return nil
}

// Key layout. Every function takes names already checked by validName.

func clusterPrefix(cluster string) string { return "/lockstep/" + cluster + "/" }

func clusterIDKey(cluster string) string { return clusterPrefix(cluster) + "id" }

func nodesPrefix(cluster string) string { return clusterPrefix(cluster) + "nodes/" }

func nodeKey(cluster, name string) string { return nodesPrefix(cluster) + name }

func groupPrefix(cluster, group string) string {
	return clusterPrefix(cluster) + "groups/" + group + "/"
}

func configKey(cluster, group string) string { return groupPrefix(cluster, group) + "config" }

func electionPrefix(cluster, group string) string {
	return groupPrefix(cluster, group) + "election"
}

// PublishDue reports whether a node whose last published record is last,
// published since ago, must publish next now: at once for a change of
// state, role, epoch or completeness, which the reconfiguration leader
// acts on, and for progress alone (applied, lag, commit) at most once a
// second, since every write to a node record wakes the leader.
func PublishDue(last, next NodeInfo, since time.Duration) bool {
	changed := next.State != last.State || next.Role != last.Role || next.Epoch != last.Epoch ||
		next.Complete != last.Complete
	progress := next.Applied != last.Applied || next.Lag != last.Lag || next.Commit != last.Commit
	return changed || (progress && since >= time.Second)
}
