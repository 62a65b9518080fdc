package traefik

import (
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"unsafe"

	"golang.org/x/sys/unix"
)

// inotifyEvent is one event of a watched folder.
type inotifyEvent struct {
	mask uint32
	name string
}

// readEvents reads the events queued on the non-blocking inotify fd.
func readEvents(t testing.TB, fd int) []inotifyEvent {
	t.Helper()
	var out []inotifyEvent
	buf := make([]byte, 1<<20)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil || n <= 0 {
			return out
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			out = append(out, inotifyEvent{ev.Mask, string(trimNUL(name))})
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
	}
}

// TestConversionHoldsTraefik guards Traefik's cost of the conversion from
// one file per route: Traefik reads the whole folder again at every event,
// and handles events one after the other, so the hold file is the first
// change of the folder and its removal the last, and it stays until a
// reader that lags behind, as Traefik does, has handled every event before
// it: such a reader reads the converted folder in full only at the end.
func TestConversionHoldsTraefik(t *testing.T) {
	r, root := openTestRoutes(t)
	want := map[string]*Configuration{}
	for i := range 40 {
		id := "wl-" + strconv.Itoa(i)
		want[id] = testRoute(id, i)
		writeLegacy(t, r, id, want[id])
	}
	r2, _ := load(t, root)

	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, r2.Path(), unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_MOVED_FROM|unix.IN_DELETE|unix.IN_CLOSE_WRITE); err != nil {
		t.Fatal(err)
	}

	// A reader like Traefik's file provider, 5 ms per event: it opens the
	// folder and its first file, and reads all of it (counted) when that
	// is not the hold file.
	lag, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(lag)
	if _, err := unix.InotifyAddWatch(lag, r2.Path(), unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_MOVED_FROM|unix.IN_DELETE); err != nil {
		t.Fatal(err)
	}
	var (
		mu         sync.Mutex
		held, full int
	)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			events := readEvents(t, lag)
			if len(events) == 0 {
				select {
				case <-done:
					return
				case <-time.After(time.Millisecond):
				}
				continue
			}
			for range events {
				time.Sleep(5 * time.Millisecond)
				entries, err := os.ReadDir(r2.Path())
				if err != nil || len(entries) == 0 {
					continue
				}
				f, err := os.Open(filepath.Join(r2.Path(), entries[0].Name()))
				if err == nil {
					f.Close()
				}
				mu.Lock()
				if entries[0].Name() == holdFile+FileExt {
					held++
				} else {
					full++
				}
				mu.Unlock()
			}
		}
	}()

	converted, err := r2.PublishAll(want)
	if err != nil || converted != len(want) {
		t.Fatalf("PublishAll = %d, %v", converted, err)
	}
	events := readEvents(t, fd)
	close(done)
	<-stopped

	first, last := events[0], events[len(events)-1]
	if first.name != holdFile+FileExt || first.mask&unix.IN_MOVED_TO == 0 || last.name != holdFile+FileExt || last.mask&unix.IN_DELETE == 0 {
		t.Fatalf("first event %+v, last %+v: want the hold file put first and removed last", first, last)
	}
	if _, err := os.Stat(filepath.Join(r2.Path(), holdFile+FileExt)); !os.IsNotExist(err) {
		t.Fatalf("hold file left: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d events in the folder; the lagging reader handled %d held, %d in full", len(events), held, full)
	if held < len(want) || full > 2 {
		t.Fatalf("the lagging reader read the folder in full %d times and was held %d times, want at most twice in full", full, held)
	}
}

// TestHoldFileLeftBehind guards a crash during a conversion: the hold file
// left behind freezes Traefik's routes, so the next start removes it even
// with nothing left to convert, and a sweep moves one found while running.
func TestHoldFileLeftBehind(t *testing.T) {
	r, root := openTestRoutes(t)
	if err := r.Publish("a", testRoute("a", 0)); err != nil {
		t.Fatal(err)
	}
	hold := filepath.Join(r.Path(), holdFile+FileExt)
	writeFile(t, hold, holdContent)
	r2, got := load(t, root)
	if converted, err := r2.PublishAll(got); err != nil || converted != 0 {
		t.Fatalf("PublishAll = %d, %v", converted, err)
	}
	if _, err := os.Stat(hold); !os.IsNotExist(err) {
		t.Fatalf("hold file left: %v", err)
	}
	writeFile(t, hold, holdContent)
	moved, err := r2.Sweep(func(string) bool { return true })
	if err != nil || len(moved) != 1 || moved[0].Name != holdFile+FileExt || moved[0].Err != nil {
		t.Fatalf("sweep moved %+v, %v", moved, err)
	}
}
