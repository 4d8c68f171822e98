package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// upDir is a 'lockstep up' directory held for the life of one 'up': an
// exclusive lock on the directory itself keeps a second 'up' from starting
// another cluster over the first one's data, etcd and logs.
type upDir struct {
	path string
	lock *os.File
	// prev is the cluster an earlier 'up' left in the directory, if any.
	prev *upInfo
}

// errUpDirInUse means another 'lockstep up' runs in the directory.
var errUpDirInUse = errors.New("in use by a running 'lockstep up'")

// openUpDir creates dir if need be, locks it, and finds what an earlier
// 'up' left there. A directory that holds files but no cluster.json was
// not made by 'up' and is refused: a mistyped --dir must never have its
// files mixed with a cluster's, or wiped by --fresh. With fresh, an
// earlier cluster is removed; otherwise it is resumed.
func openUpDir(dir string, fresh bool) (*upDir, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("--dir: %w", err)
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("--dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("--dir %s is %w%s; stop it first, or choose another --dir", dir, errUpDirInUse, pidNote(dir))
		}
		return nil, fmt.Errorf("--dir %s: lock: %w", dir, err)
	}
	d := &upDir{path: dir, lock: f}
	if err := d.inspect(fresh); err != nil {
		d.close()
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "up.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		d.close()
		return nil, fmt.Errorf("--dir: %w", err)
	}
	return d, nil
}

// inspect reads an earlier cluster's cluster.json, or empties the
// directory for a fresh one.
func (d *upDir) inspect(fresh bool) error {
	entries, err := os.ReadDir(d.path)
	if err != nil {
		return fmt.Errorf("--dir %s: %w", d.path, err)
	}
	if len(entries) == 0 {
		return nil
	}
	info, err := readUpInfo(d.path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("--dir %s is not empty and was not made by 'lockstep up' (no cluster.json); choose another directory", d.path)
	}
	if err != nil {
		return err
	}
	if !fresh {
		d.prev = &info
		return nil
	}
	for _, e := range entries {
		if e.Name() == "up.pid" {
			continue // this 'up's own
		}
		if err := os.RemoveAll(filepath.Join(d.path, e.Name())); err != nil {
			return fmt.Errorf("--fresh: %w", err)
		}
	}
	return nil
}

// pidNote names the pid of the 'up' holding dir, if it wrote one.
func pidNote(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "up.pid"))
	if err != nil {
		return ""
	}
	return " (pid " + strings.TrimSpace(string(b)) + ")"
}

// close releases the lock.
func (d *upDir) close() {
	_ = os.Remove(filepath.Join(d.path, "up.pid"))
	_ = d.lock.Close()
}
