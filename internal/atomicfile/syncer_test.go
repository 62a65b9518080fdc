package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// TestSyncerSharesSyncs checks that concurrent writers all get their sync,
// and share them: far fewer syncs than writers.
func TestSyncerSharesSyncs(t *testing.T) {
	dir := t.TempDir()
	staging := t.TempDir()
	s := NewSyncer(dir)
	const writers = 64
	// The first sync lasts until every writer has made its change: on an
	// idle machine with a fast disk each sync would otherwise end before
	// the next writer comes, and there would be nothing to share.
	allChanged := make(chan struct{})
	var changes atomic.Int32
	first := true // syncDir runs one call at a time
	s.syncDir = func(dir string) error {
		if first {
			first = false
			<-allChanged
		}
		return SyncDir(dir)
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			if err := WriteStagedNoSync(staging, filepath.Join(dir, strconv.Itoa(i)), []byte("x"), 0o644); err != nil {
				errs <- err
				return
			}
			s.Changed()
			if changes.Add(1) == writers {
				close(allChanged)
			}
			errs <- s.Sync()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != writers {
		t.Fatalf("%d files, %v; want %d", len(entries), err, writers)
	}
	if s.done != writers || s.started >= writers {
		t.Fatalf("%d syncs covered %d changes of %d", s.started, s.done, writers)
	}
}

// TestSyncerWritersShareTheNextSync checks the sharing itself: writers that
// call Sync while a sync runs all wait for one more sync, not one each.
func TestSyncerWritersShareTheNextSync(t *testing.T) {
	s := NewSyncer(t.TempDir())
	release := make(chan struct{})
	var calls int
	s.syncDir = func(dir string) error {
		calls++ // under no lock: syncs never overlap, which this checks too
		if calls == 1 {
			<-release
		}
		return SyncDir(dir)
	}
	const writers = 10
	var wg sync.WaitGroup
	s.Changed()
	wg.Go(func() { s.Sync() })
	for {
		s.mu.Lock()
		running := s.running
		s.mu.Unlock()
		if running {
			break
		}
		runtime.Gosched()
	}
	for range writers {
		s.Changed()
		wg.Go(func() {
			if err := s.Sync(); err != nil {
				t.Error(err)
			}
		})
	}
	for {
		s.mu.Lock()
		waiting := s.waiting
		s.mu.Unlock()
		if waiting == writers {
			break
		}
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	if calls != 2 {
		t.Fatalf("%d syncs for one running and %d waiting writers, want 2", calls, writers)
	}
}

// TestSyncerReportsAFailedSync checks that a writer whose change a failed
// sync covered is told its change may not survive, and that the next sync,
// once the folder syncs again, succeeds.
func TestSyncerReportsAFailedSync(t *testing.T) {
	dir := t.TempDir()
	s := NewSyncer(dir)
	if err := s.Sync(); err != nil || s.started != 0 {
		t.Fatalf("Sync with nothing changed = %v after %d syncs", err, s.started)
	}
	s.Changed()
	fault := errors.New("injected")
	restore := FailDirSync(dir, fault)
	err := s.Sync()
	restore()
	if !errors.Is(err, ErrNotDurable) || !errors.Is(err, fault) {
		t.Fatalf("Sync = %v, want ErrNotDurable wrapping the fault", err)
	}
	// Nothing changed since, and calling again retries.
	if err := s.Sync(); err != nil || s.started != 2 {
		t.Fatalf("Sync after the fault = %v after %d syncs", err, s.started)
	}
	if err := s.Sync(); err != nil || s.started != 2 {
		t.Fatalf("Sync with everything synced = %v after %d syncs", err, s.started)
	}
}

func TestNoSyncWritesAndRemoves(t *testing.T) {
	dir, staging := t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "f")
	if err := WriteStagedNoSync(staging, path, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != "data" {
		t.Fatalf("read %q, %v", got, err)
	}
	if entries, _ := os.ReadDir(staging); len(entries) != 0 {
		t.Fatalf("staging holds %d entries", len(entries))
	}
	for range 2 { // a missing file is not an error
		if err := RemoveNoSync(path); err != nil {
			t.Fatal(err)
		}
	}
}
