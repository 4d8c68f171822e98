package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/lockstep/lockstep/coord"
)

// cleanStopFile is the record a node leaves in its --data-dir when it
// stops gracefully with a state that is all committed (replica.Retire),
// so that its next start may keep that state (coord.KeepClean).
const cleanStopFile = "clean-stop.json"

// retireWait bounds how long a stopping node waits to learn that what it
// applied is committed (an ack's round trip, normally a few ms).
const retireWait = 2 * time.Second

// writeCleanStop records rec durably: the file is written, synced and
// renamed into place, and the directory synced, so a crash leaves either
// no record or the whole one.
func writeCleanStop(dataDir string, rec coord.Clean) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	path := filepath.Join(dataDir, cleanStopFile)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dataDir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// takeCleanStop reads and removes the clean-stop record, if any: it is
// good for one start only, since the state moves on once the node runs.
// A record that cannot be read counts as none (the state is then not
// kept, which is always safe).
func takeCleanStop(dataDir string, log *slog.Logger) (coord.Clean, bool) {
	path := filepath.Join(dataDir, cleanStopFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return coord.Clean{}, false
	}
	var rec coord.Clean
	if err == nil {
		err = json.Unmarshal(b, &rec)
	}
	if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		log.Warn("could not remove the clean-stop record", "path", path, "err", rerr)
	}
	if err != nil {
		log.Warn("ignoring an unreadable clean-stop record", "path", path, "err", err)
		return coord.Clean{}, false
	}
	return rec, true
}

// retire leaves a clean-stop record if the replica can vouch that its
// state is all committed; otherwise the next start rejoins by snapshot.
func (n *clusterNode) retire(dataDir string) {
	if n.rep == nil || n.store == nil || !n.store.Durable() || dataDir == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), retireWait)
	defer cancel()
	seq, forced, err := n.rep.Retire(ctx)
	if err != nil {
		n.log.Info("no clean stop: the next start rejoins by snapshot", "reason", err)
		return
	}
	rec := coord.Clean{Seq: seq, DataID: dataID(n.store), Forced: forced}
	if err := writeCleanStop(dataDir, rec); err != nil {
		n.log.Warn("could not record the clean stop: the next start rejoins by snapshot", "err", fmt.Errorf("%s: %w", dataDir, err))
		return
	}
	n.log.Info("clean stop: the state on disk is all committed; the next start keeps it and catches up from the group's log",
		"applied", seq, "data_id", rec.DataID)
}
