package faultfs

import (
	"errors"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/vfs"
)

// TestFaults checks each fault against each kind of operation, SyncData
// included: it is how Pebble's WAL syncs, and errorfs alone lets it pass.
func TestFaults(t *testing.T) {
	fs := Wrap(vfs.NewMem())
	f, err := fs.Create("f")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ops := map[string]func() error{
		"write": func() error { _, err := f.Write([]byte("x")); return err },
		"create": func() error {
			g, err := fs.Create("g")
			if err == nil {
				g.Close()
			}
			return err
		},
		"sync":     f.Sync,
		"syncdata": f.SyncData,
		"syncto":   func() error { _, err := f.SyncTo(1); return err },
		"read":     func() error { _, err := f.ReadAt(make([]byte, 1), 0); return err },
	}
	fails := map[Fault]map[string]syscall.Errno{
		None: {},
		Sync: {"sync": syscall.EIO, "syncdata": syscall.EIO, "syncto": syscall.EIO},
		Full: {"write": syscall.ENOSPC, "create": syscall.ENOSPC},
		Read: {"read": syscall.EIO},
	}
	if err := ops["write"](); err != nil {
		t.Fatal(err)
	}
	var want int64
	for _, fault := range []Fault{None, Sync, Full, Read, None} {
		fs.Set(fault)
		for name, op := range ops {
			err := op()
			errno, fail := fails[fault][name]
			switch {
			case fail && !(errors.Is(err, ErrInjected) && errors.Is(err, errno)):
				t.Errorf("%s under %v = %v, want the injected %v", name, fault, err, errno)
			case !fail && err != nil:
				t.Errorf("%s under %v = %v, want it to work", name, fault, err)
			}
			if fail {
				want++
			}
		}
	}
	if fs.Injected() != want {
		t.Fatalf("Injected() = %d, want %d", fs.Injected(), want)
	}
}
