package traefik

import (
	"path/filepath"
	"syscall"
	"testing"
	"unsafe"
)

// TestDirWriteIsOneEvent guards time to route: Traefik re-reads the whole
// folder on every event in it, so a write must show up there as one rename
// and nothing else (no temporary file created, written or chmodded there).
func TestDirWriteIsOneEvent(t *testing.T) {
	d, err := OpenDir(filepath.Join(t.TempDir(), "proxy"))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Write("a", []byte("one")); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if _, err := syscall.InotifyAddWatch(fd, d.Path(), syscall.IN_ALL_EVENTS&^(syscall.IN_ACCESS|syscall.IN_OPEN|syscall.IN_CLOSE_NOWRITE)); err != nil {
		t.Fatal(err)
	}
	if err := d.Write("a", []byte("two")); err != nil {
		t.Fatal(err)
	}
	if err := d.Write("b", []byte("new")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64*1024)
	n, err := syscall.Read(fd, buf)
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	for off := 0; off+syscall.SizeofInotifyEvent <= n; {
		ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
		name := buf[off+syscall.SizeofInotifyEvent : off+syscall.SizeofInotifyEvent+int(ev.Len)]
		events = append(events, string(trimNUL(name)))
		if ev.Mask&syscall.IN_MOVED_TO == 0 {
			t.Errorf("event %#x on %q in the watched folder; want only renames into it", ev.Mask, trimNUL(name))
		}
		off += syscall.SizeofInotifyEvent + int(ev.Len)
	}
	if len(events) != 2 {
		t.Fatalf("events %q, want one rename per write", events)
	}
}

func trimNUL(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}
