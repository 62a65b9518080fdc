package acmedns

import (
	"sync"
	"time"
)

// rateLogInterval is the least time between two log lines of one rateLog.
const rateLogInterval = time.Minute

// rateLog counts events that anyone on the Internet can cause at will (an
// answer the kernel refuses, a connection beyond the limits), so that they
// are logged at most once per rateLogInterval, with their number, instead
// of once each: a flood of them must not become a flood of log lines.
type rateLog struct {
	mu    sync.Mutex
	last  time.Time // of the last line logged
	count int       // events since then
}

// note counts one event at now. It returns true, with the number of events
// since the last line logged (this one included), when a line is due.
func (r *rateLog) note(now time.Time) (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.count++
	if !r.last.IsZero() && now.Sub(r.last) < rateLogInterval {
		return 0, false
	}
	n := r.count
	r.last, r.count = now, 0
	return n, true
}
