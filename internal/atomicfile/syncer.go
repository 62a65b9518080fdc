package atomicfile

import (
	"fmt"
	"sync"
)

// Syncer syncs one folder on behalf of many writers, as a database's group
// commit does: a writer makes its change visible (WriteStagedNoSync,
// RemoveNoSync), calls Changed, then Sync, which returns once a sync of the
// folder that started after the call has ended. Writers that call Sync
// while a sync runs share the next one, so N concurrent changes cost about
// two syncs, not N; and a Sync with no change left unsynced costs nothing.
type Syncer struct {
	dir string
	// syncDir is SyncDir; tests count and hold syncs with it.
	syncDir func(dir string) error

	mu   sync.Mutex
	cond *sync.Cond
	// changed counts the changes made visible; done is how many of them
	// a successful sync covered.
	changed, done uint64
	// started counts the syncs started, finished the last one ended;
	// running is set while one is under way.
	started, finished uint64
	running           bool
	// waiting counts the callers waiting for a sync to end.
	waiting int
	// err is the error of the last sync that failed.
	err error
}

// NewSyncer returns a Syncer of the folder dir.
func NewSyncer(dir string) *Syncer {
	s := &Syncer{dir: dir, syncDir: SyncDir}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// Changed records a change made visible in the folder, that the next Sync
// must cover.
func (s *Syncer) Changed() {
	s.mu.Lock()
	s.changed++
	s.mu.Unlock()
}

// Sync makes every change recorded before it was called survive a power
// cut. It returns at once when a successful sync covered them already;
// otherwise it waits for a sync that starts after the call, which retries
// after a failed one. Its error wraps ErrNotDurable: the changes took
// place, but may not survive.
func (s *Syncer) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ticket := s.changed
	if s.done >= ticket {
		return nil
	}
	// The sync under way, if any, may have started before the change.
	want := s.started + 1
	for s.finished < want {
		if s.running {
			s.waiting++
			s.cond.Wait()
			s.waiting--
			continue
		}
		s.started++
		covers := s.changed
		s.running = true
		s.mu.Unlock()
		err := s.syncDir(s.dir)
		s.mu.Lock()
		s.running = false
		s.finished = s.started
		if err != nil {
			s.err = err
		} else {
			s.done = max(s.done, covers)
		}
		s.cond.Broadcast()
	}
	if s.done >= ticket {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrNotDurable, s.err)
}
