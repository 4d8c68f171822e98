package coord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Pause is an operator's pause of a group's automation (as Patroni's
// maintenance mode): while it is set the reconfigurator changes nothing,
// neither removing a dead member, nor adding a joiner, nor failing over,
// so an operator can restart or move nodes without the group reacting.
// Nodes go on serving in the configuration they have.
type Pause struct {
	Since  time.Time `json:"since"`
	Reason string    `json:"reason,omitempty"`
}

func pauseKey(cluster, group string) string { return groupPrefix(cluster, group) + "paused" }

// SetPause pauses the group's automation, with reason for status.
func SetPause(ctx context.Context, cli *clientv3.Client, cluster, group, reason string) error {
	if err := validGroup(cluster, group); err != nil {
		return err
	}
	b, err := json.Marshal(Pause{Since: time.Now().UTC(), Reason: reason})
	if err != nil {
		return err
	}
	if _, err := cli.Put(ctx, pauseKey(cluster, group), string(b)); err != nil {
		return fmt.Errorf("coord: pause group %s: %w", group, err)
	}
	return nil
}

// ClearPause resumes the group's automation; the reconfigurator plans
// again at once.
func ClearPause(ctx context.Context, cli *clientv3.Client, cluster, group string) error {
	if err := validGroup(cluster, group); err != nil {
		return err
	}
	if _, err := cli.Delete(ctx, pauseKey(cluster, group)); err != nil {
		return fmt.Errorf("coord: resume group %s: %w", group, err)
	}
	return nil
}

// GetPause returns the group's pause, or nil if it is not paused.
func GetPause(ctx context.Context, cli *clientv3.Client, cluster, group string) (*Pause, error) {
	if err := validGroup(cluster, group); err != nil {
		return nil, err
	}
	resp, err := cli.Get(ctx, pauseKey(cluster, group))
	if err != nil {
		return nil, fmt.Errorf("coord: read pause of group %s: %w", group, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return decodePause(resp.Kvs[0].Value)
}

func decodePause(b []byte) (*Pause, error) {
	var p Pause
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("coord: pause record: %w", err)
	}
	return &p, nil
}

func validGroup(cluster, group string) error {
	return errors.Join(validName("cluster", cluster), validName("group", group))
}
