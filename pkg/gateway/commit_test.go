package gateway

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// queued waits until n Sets wait in the module's queue.
func queued(t *testing.T, m *Module, n int) {
	t.Helper()
	for {
		m.qmu.Lock()
		got := len(m.queue)
		m.qmu.Unlock()
		if got == n {
			return
		}
		if got > n {
			t.Fatalf("%d Sets queued, want %d", got, n)
		}
		runtime.Gosched()
	}
}

// TestConcurrentSetsShareABatch guards the group commit: Sets that queue
// while the module is busy are committed together, with one change of the
// meter's table, and each caller gets its own outcome.
func TestConcurrentSetsShareABatch(t *testing.T) {
	root := t.TempDir()
	book := newBookMeter()
	m, _ := newModuleWith(t, root, func(c *Config) { c.Meter = book })
	book.take()
	const callers = 64
	// The module is busy: every Set queues.
	m.mu.Lock()
	var wg sync.WaitGroup
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			_, errs[i] = c21(m).SetNamedProxy(fmt.Sprintf("wl-%d", i), fmt.Sprintf("app-%d", i), []string{fmt.Sprintf("http://10.0.%d.1", i)}, false)
		})
	}
	queued(t, m, callers)
	m.mu.Unlock()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Set %d: %v", i, err)
		}
	}
	if book.batches != 1 {
		t.Errorf("%d changes of the meter for %d queued Sets, want 1", book.batches, callers)
	}
	list, _ := c21(m).List()
	routes := grouped(t, root)
	for i := range callers {
		if routes[fmt.Sprintf("wl-%d", i)] == nil {
			t.Errorf("wl-%d not in its group file", i)
		}
	}
	if len(list) != callers {
		t.Errorf("List holds %d routes, want %d", len(list), callers)
	}
	m.qmu.Lock()
	defer m.qmu.Unlock()
	if m.leading || len(m.queue) != 0 {
		t.Errorf("after the last Set: leading %v, %d queued", m.leading, len(m.queue))
	}
}

// TestBatchKeepsTheOrderOfDependentSets guards the semantics of a batch:
// Sets queued together end as if made one after the other, in their order,
// when they touch one wlID or one domain.
func TestBatchKeepsTheOrderOfDependentSets(t *testing.T) {
	root := t.TempDir()
	m, _ := newModule(t, root)
	if _, err := c21(m).SetNamedProxy("a", "x", []string{"http://10.0.0.1"}, false); err != nil {
		t.Fatal(err)
	}
	type set struct{ id, prefix, backend string }
	for _, tc := range []struct {
		name  string
		sets  []set
		want  []string // per Set: "" for success, or a part of its error
		final map[string]string
	}{
		{
			name:  "a domain freed by an earlier Set is free",
			sets:  []set{{"a", "y", "http://10.0.0.1"}, {"b", "x", "http://10.0.0.2"}},
			want:  []string{"", ""},
			final: map[string]string{"a": "y.gw.example", "b": "x.gw.example"},
		},
		{
			name:  "a domain taken by an earlier Set is taken",
			sets:  []set{{"c", "z", "http://10.0.0.3"}, {"d", "z", "http://10.0.0.4"}},
			want:  []string{"", "already registered"},
			final: map[string]string{"c": "z.gw.example"},
		},
		{
			name:  "the last Set of a wlID wins",
			sets:  []set{{"e", "e1", "http://10.0.0.5"}, {"e", "e2", "http://10.0.0.6"}, {"e", "e3", "http://10.0.0.7"}},
			want:  []string{"", "", ""},
			final: map[string]string{"e": "e3.gw.example"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m.mu.Lock()
			errs := make([]error, len(tc.sets))
			var wg sync.WaitGroup
			for i, s := range tc.sets {
				// One at a time into the queue, in order.
				wg.Go(func() { _, errs[i] = c21(m).SetNamedProxy(s.id, s.prefix, []string{s.backend}, false) })
				queued(t, m, i+1)
			}
			m.mu.Unlock()
			wg.Wait()
			for i, err := range errs {
				switch {
				case tc.want[i] == "" && err != nil:
					t.Errorf("Set %d: %v", i, err)
				case tc.want[i] != "" && (err == nil || !strings.Contains(err.Error(), tc.want[i])):
					t.Errorf("Set %d: %v, want an error with %q", i, err, tc.want[i])
				}
			}
			list, _ := c21(m).List()
			got := make(map[string]string)
			for _, p := range list {
				got[p.WorkloadID] = p.FQDN
			}
			for id, fqdn := range tc.final {
				if got[id] != fqdn {
					t.Errorf("%s serves %q, want %q", id, got[id], fqdn)
				}
			}
		})
	}
}

// BenchmarkConcurrentSets times new routes set by 8 callers at once.
func BenchmarkConcurrentSets(b *testing.B) {
	m, _ := newModule(b, b.TempDir())
	var n atomic.Int64
	b.SetParallelism(4) // 8 callers on 2 cores
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if _, err := c21(m).SetNamedProxy(fmt.Sprintf("wl-%d", i), fmt.Sprintf("app-%d", i), []string{"http://10.0.0.1"}, false); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
