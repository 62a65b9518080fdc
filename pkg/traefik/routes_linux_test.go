package traefik

import (
	"os"
	"path/filepath"
	"slices"
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

// TestImportDoneHoldsTraefik guards Traefik's cost of the first start with
// a store on a folder of one file per route: Traefik reads the whole
// folder again at every event, and handles events one after the other, so
// while ImportDone removes the old files the hold file is the first change
// of the folder and its removal the last, and it stays until a reader that
// lags behind, as Traefik does, has handled every event before it: such a
// reader reads the folder in full only at the end.
func TestImportDoneHoldsTraefik(t *testing.T) {
	r, root := openTestRoutes(t)
	want := map[string]*Configuration{}
	for i := range 40 {
		id := "wl-" + strconv.Itoa(i)
		want[id] = testRoute(id, i)
		writeLegacy(t, r, id, want[id])
	}
	r2, err := OpenRoutes(root)
	if err != nil {
		t.Fatal(err)
	}
	files, err := r2.Importables()
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.KeepImported(files); err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Reset(want); err != nil {
		t.Fatal(err)
	}

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

	if err := r2.ImportDone(files); err != nil {
		t.Fatalf("ImportDone: %v", err)
	}
	events := readEvents(t, fd)
	close(done)
	<-stopped

	if len(events) == 0 {
		t.Fatal("ImportDone changed nothing in the folder")
	}
	first, last := events[0], events[len(events)-1]
	if first.name != holdFile+FileExt || first.mask&unix.IN_MOVED_TO == 0 || last.name != holdFile+FileExt || last.mask&unix.IN_DELETE == 0 {
		t.Fatalf("first event %+v, last %+v: want the hold file put first and removed last", first, last)
	}
	if got := folder(t, r2); len(got) != len(groupsOf(want)) {
		t.Fatalf("the folder holds %v, want the %d group files", got, len(groupsOf(want)))
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d events in the folder; the lagging reader handled %d held, %d in full", len(events), held, full)
	if held < len(want) || full > 2 {
		t.Fatalf("the lagging reader read the folder in full %d times and was held %d times, want at most twice in full", full, held)
	}
}

// TestHoldFileLeftBehind guards a crash while the old files are removed:
// the hold file left behind freezes Traefik's routes. A start that imports
// again takes it away with its own; one with nothing to import leaves it to
// the sweep, which moves it at once.
func TestHoldFileLeftBehind(t *testing.T) {
	tests := []struct {
		name string
		// legacy is set when the crash left old files to import again.
		legacy bool
		// swept is set when the sweep after the start must move the hold
		// file.
		swept bool
	}{
		{name: "start that imports again", legacy: true},
		{name: "start with nothing to import", swept: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, root := openTestRoutes(t)
			want := map[string]*Configuration{"a": testRoute("a", 0)}
			if _, err := r.Reset(want); err != nil {
				t.Fatal(err)
			}
			if tt.legacy {
				writeLegacy(t, r, "a", want["a"])
			}
			hold := filepath.Join(r.Path(), holdFile+FileExt)
			writeFile(t, hold, holdContent)

			r2, err := OpenRoutes(root)
			if err != nil {
				t.Fatal(err)
			}
			files, err := r2.Importables()
			if err != nil {
				t.Fatal(err)
			}
			if err := r2.KeepImported(files); err != nil {
				t.Fatal(err)
			}
			if _, err := r2.Reset(want); err != nil {
				t.Fatal(err)
			}
			if err := r2.ImportDone(files); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(hold); tt.swept == os.IsNotExist(err) {
				t.Fatalf("hold file after the import: %v", err)
			}
			moved, err := r2.Sweep(func(id string) bool { return want[id] != nil })
			if err != nil {
				t.Fatal(err)
			}
			if tt.swept && (len(moved) != 1 || moved[0].Name != holdFile+FileExt || moved[0].Err != nil) || !tt.swept && moved != nil {
				t.Fatalf("sweep moved %+v", moved)
			}
			if got := folder(t, r2); !slices.Equal(got, []string{GroupName("a") + FileExt}) {
				t.Fatalf("the folder holds %v", got)
			}
		})
	}
}
