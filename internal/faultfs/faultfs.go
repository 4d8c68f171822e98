// Package faultfs is a filesystem whose disk fails on command, for tests
// of what a store and a replica do when fsync, a write or a read fails.
//
// It is Pebble's vfs/errorfs over any vfs.FS, with an injector the test
// switches at run time (Set), plus what errorfs leaves out: errorfs
// injects into File.Sync but not into SyncData or SyncTo, and Pebble's
// WAL syncs through SyncData (vfs.NewSyncingFile), so errorfs alone never
// fails the fsync a durable write waits for. Here every flavour of sync
// fails alike.
package faultfs

import (
	"fmt"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/cockroachdb/pebble/vfs/errorfs"
)

// ErrInjected is wrapped by every error the filesystem injects, together
// with the errno a real disk would give (EIO, ENOSPC).
var ErrInjected = errorfs.ErrInjected

// Fault is what fails while it is set.
type Fault uint32

const (
	// None: nothing fails.
	None Fault = iota
	// Sync: every fsync fails with EIO, of files and directories, as on
	// a disk that lost its writeback.
	Sync
	// Full: every write, create, link, rename and preallocation fails
	// with ENOSPC, as on a full disk. Reads and fsyncs still work.
	Full
	// Read: every read of a file fails with EIO.
	Read
)

func (f Fault) String() string {
	switch f {
	case None:
		return "none"
	case Sync:
		return "fsync"
	case Full:
		return "full disk"
	case Read:
		return "read"
	}
	return fmt.Sprintf("fault(%d)", uint32(f))
}

// FS is a vfs.FS that fails as its current Fault says. Safe for
// concurrent use.
type FS struct {
	vfs.FS
	fault    atomic.Uint32
	injected atomic.Int64
}

// Wrap returns fs with no fault set.
func Wrap(fs vfs.FS) *FS {
	f := &FS{}
	inj := errorfs.InjectorFunc(f.maybeError)
	f.FS = errorfs.Wrap(syncFS{FS: fs, inj: inj}, inj)
	return f
}

// Set makes the operations of fault fail from now on, and any other fault
// stop; None heals the disk.
func (f *FS) Set(fault Fault) { f.fault.Store(uint32(fault)) }

// Injected is how many operations have failed so far: a test checks that
// the fault it set was met.
func (f *FS) Injected() int64 { return f.injected.Load() }

func (f *FS) maybeError(op errorfs.Op, path string) error {
	var errno syscall.Errno
	switch Fault(f.fault.Load()) {
	case Sync:
		if op == errorfs.OpFileSync {
			errno = syscall.EIO
		}
	case Full:
		switch op {
		case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFilePreallocate,
			errorfs.OpCreate, errorfs.OpLink, errorfs.OpRename, errorfs.OpReuseForRewrite, errorfs.OpMkdirAll:
			errno = syscall.ENOSPC
		}
	case Read:
		if op == errorfs.OpFileRead || op == errorfs.OpFileReadAt {
			errno = syscall.EIO
		}
	}
	if errno == 0 {
		return nil
	}
	f.injected.Add(1)
	return fmt.Errorf("%w: %s %s: %w", ErrInjected, opName(op), path, errno)
}

func opName(op errorfs.Op) string {
	switch op {
	case errorfs.OpFileSync:
		return "sync"
	case errorfs.OpFileRead, errorfs.OpFileReadAt:
		return "read"
	default:
		return "write"
	}
}

// syncFS hands out files whose SyncData and SyncTo ask the injector, as
// errorfs's own Sync does; errorfs wraps it and covers everything else.
type syncFS struct {
	vfs.FS
	inj errorfs.Injector
}

func (s syncFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return syncFile{File: f, name: name, inj: s.inj}, nil
}

func (s syncFS) Create(name string) (vfs.File, error) {
	f, err := s.FS.Create(name)
	return s.wrap(name, f, err)
}

func (s syncFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := s.FS.Open(name, opts...)
	return s.wrap(name, f, err)
}

func (s syncFS) OpenReadWrite(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := s.FS.OpenReadWrite(name, opts...)
	return s.wrap(name, f, err)
}

func (s syncFS) OpenDir(name string) (vfs.File, error) {
	f, err := s.FS.OpenDir(name)
	return s.wrap(name, f, err)
}

func (s syncFS) ReuseForWrite(oldname, newname string) (vfs.File, error) {
	f, err := s.FS.ReuseForWrite(oldname, newname)
	return s.wrap(newname, f, err)
}

// Unwrap returns the filesystem underneath, as vfs.Root expects.
func (s syncFS) Unwrap() vfs.FS { return s.FS }

type syncFile struct {
	vfs.File
	name string
	inj  errorfs.Injector
}

func (f syncFile) SyncData() error {
	if err := f.inj.MaybeError(errorfs.OpFileSync, f.name); err != nil {
		return err
	}
	return f.File.SyncData()
}

func (f syncFile) SyncTo(length int64) (bool, error) {
	if err := f.inj.MaybeError(errorfs.OpFileSync, f.name); err != nil {
		return false, err
	}
	return f.File.SyncTo(length)
}
