package storage

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/lockstep/lockstep/internal/faultfs"
)

// TestPebbleWriteFaultFailsStore checks what a failing disk does to the
// store, for a failed fsync and for a full disk: the Sync after the fault
// returns the disk's error instead of calling pebble's Logger.Fatalf (the
// caller must learn of it and stop in order), the store then refuses every
// write even once the disk works again, and what a crash keeps is what the
// last good Sync made durable, no more.
func TestPebbleWriteFaultFailsStore(t *testing.T) {
	for _, tc := range []struct {
		fault faultfs.Fault
		errno syscall.Errno
	}{{faultfs.Sync, syscall.EIO}, {faultfs.Full, syscall.ENOSPC}} {
		t.Run(tc.fault.String(), func(t *testing.T) {
			mem := vfs.NewStrictMem()
			fs := faultfs.Wrap(mem)
			p := openPebble(t, "db", PebbleOptions{FS: fs})
			apply(t, p, 1, set("a", "1"))
			if err := p.Sync(); err != nil {
				t.Fatalf("Sync before the fault: %v", err)
			}
			fs.Set(tc.fault)
			// Apply only commits to pebble's memtable and WAL buffer; the
			// disk's error comes with the next fsync.
			apply(t, p, 2, set("a", "2"))
			err := p.Sync()
			if !errors.Is(err, ErrFailed) || !errors.Is(err, tc.errno) {
				t.Fatalf("Sync under the fault = %v, want ErrFailed wrapping %v", err, tc.errno)
			}
			fs.Set(faultfs.None)
			if err := p.Sync(); !errors.Is(err, ErrFailed) {
				t.Fatalf("Sync after the disk healed = %v, want ErrFailed still", err)
			}
			if err := p.Apply(&Batch{Seq: 3, Ops: []Op{set("a", "3")}}); !errors.Is(err, ErrFailed) {
				t.Fatalf("Apply after the failure = %v, want ErrFailed", err)
			}
			if e, ok, err := p.Get([]byte("a")); err != nil || !ok || string(e.Value) != "2" {
				t.Fatalf("Get after the failure = %q %v %v, want the applied 2", e.Value, ok, err)
			}
			mem.SetIgnoreSyncs(true)
			if err := p.Close(); !errors.Is(err, ErrFailed) {
				t.Fatalf("Close of the failed store = %v, want ErrFailed", err)
			}
			mem.ResetToSyncedState()
			mem.SetIgnoreSyncs(false)
			p = openPebble(t, "db", PebbleOptions{FS: mem})
			defer closePebble(t, p)
			if p.AppliedSeq() != 1 {
				t.Fatalf("AppliedSeq after a crash = %d, want 1: seq 2 was never synced", p.AppliedSeq())
			}
		})
	}
}

// TestPebbleReadFault checks that a failed read of an sstable comes back
// as the read's error, with no panic, and does not fail the store: a read
// changes nothing on disk, and whoever reads decides what its failure
// means (a replica stops).
func TestPebbleReadFault(t *testing.T) {
	fs := faultfs.Wrap(vfs.NewMem())
	p := openPebble(t, "db", PebbleOptions{FS: fs})
	for i := range 200 {
		apply(t, p, uint64(i+1), set(fmt.Sprintf("k%03d", i), strings.Repeat("v", 1000)))
	}
	// Close flushes the memtable, so the reopened store reads sstables.
	closePebble(t, p)
	p = openPebble(t, "db", PebbleOptions{FS: fs})
	defer closePebble(t, p)
	fs.Set(faultfs.Read)
	if _, _, err := p.Get([]byte("k150")); !errors.Is(err, faultfs.ErrInjected) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("Get under a read fault = %v, want the injected EIO", err)
	}
	if err := p.Scan(nil, func([]byte, Entry) bool { return true }); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Scan under a read fault = %v, want the injected EIO", err)
	}
	fs.Set(faultfs.None)
	if fs.Injected() == 0 {
		t.Fatal("no read failed")
	}
	if _, ok, err := p.Get([]byte("k150")); err != nil || !ok {
		t.Fatalf("Get after the fault = %v %v", ok, err)
	}
	apply(t, p, 201, set("after", "1"))
	if err := p.Sync(); err != nil {
		t.Fatalf("Sync after a read fault = %v; a read must not fail the store", err)
	}
}

// TestPebbleFatalfFailsStore checks the logger pebble calls when it gives
// up: Fatalf must not return (pebble would go on as if the operation had
// worked), and it fails the store first, so that a caller that recovers
// the panic still gets no write through.
func TestPebbleFatalfFailsStore(t *testing.T) {
	p := openPebble(t, "db", PebbleOptions{FS: vfs.NewMem()})
	defer func() { _ = p.Close() }()
	var logged strings.Builder
	l := slogLogger{l: slog.New(slog.NewTextHandler(&logged, nil)), fatal: p.fail}
	panicked := func() (v any) {
		defer func() { v = recover() }()
		l.Fatalf("MANIFEST sync failed: %v", syscall.EIO)
		return nil
	}()
	if panicked == nil {
		t.Fatal("Fatalf returned")
	}
	if !strings.Contains(logged.String(), "level=ERROR") || !strings.Contains(logged.String(), "MANIFEST sync failed") {
		t.Fatalf("Fatalf logged %q, want an error with the message", logged.String())
	}
	if err := p.Apply(&Batch{Seq: 1, Ops: []Op{set("a", "1")}}); !errors.Is(err, ErrFailed) {
		t.Fatalf("Apply after Fatalf = %v, want ErrFailed", err)
	}
	if err := p.Sync(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Sync after Fatalf = %v, want ErrFailed", err)
	}
}
