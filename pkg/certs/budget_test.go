package certs

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-acme/lego/v4/acme"
)

// run plans and orders, moving the fake clock to each next planned time,
// until end; at each moment of events (sorted) it calls its function first.
// It returns the orders made.
func (m testManager) run(t testing.TB, end time.Time, events map[time.Time]func()) []orderSeen {
	t.Helper()
	var times []time.Time
	for at := range events {
		times = append(times, at)
	}
	sortTimes(times)
	for {
		for len(times) > 0 && !m.clock.Now().Before(times[0]) {
			events[times[0]]()
			times = times[1:]
		}
		domain, next, changed := m.plan()
		if changed {
			m.changed()
		}
		if domain != "" {
			m.order(t.Context(), domain)
			continue
		}
		if len(times) > 0 && (next.IsZero() || times[0].Before(next)) {
			next = times[0]
		}
		if next.IsZero() || next.After(end) {
			break
		}
		if !next.After(m.clock.Now()) {
			t.Fatalf("plan: nothing to order at %s, next at %s", m.clock.Now(), next)
		}
		m.clock.Add(next.Sub(m.clock.Now()))
	}
	return m.ca.seen()
}

func sortTimes(ts []time.Time) {
	for i := range ts {
		for j := i + 1; j < len(ts); j++ {
			if ts[j].Before(ts[i]) {
				ts[i], ts[j] = ts[j], ts[i]
			}
		}
	}
}

// TestOrderBudgetAtScale guards the order storm of issue 18: thousands of
// failing domains of one tenant made 1,501 orders in 3 hours on the shared
// account (Let's Encrypt allows 300, refilled one every 36 s), and another
// tenant's first order waited 25 minutes. With the default budget the
// account stays within Let's Encrypt's bucket, and each other tenant's
// first order waits for one order at most.
func TestOrderBudgetAtScale(t *testing.T) {
	const failing = 3000
	m := newTestManager(t, "", Config{}, nil)
	// The schedule of 3,000 domains is saved twice an order: at one order
	// every 36 s that is nothing, at a whole day per second it is most of
	// the test.
	m.save = func(stateFile) error { return nil }
	m.ca.failFor = func(d string) error {
		if strings.HasSuffix(d, ".attacker.test") {
			return errValidation
		}
		return nil
	}
	var domains []string
	for i := range failing {
		domains = append(domains, fmt.Sprintf("d%d.attacker.test", i))
	}
	m.Want("attacker", domains...)
	// Victims arrive while the bucket is full of the attacker's orders,
	// spent, and refilling.
	victims := map[time.Time]string{
		t0.Add(time.Second):                      "first.victim.test",
		t0.Add(time.Hour):                        "second.victim.test",
		t0.Add(2*time.Hour + 17*time.Minute):     "third.victim.test",
		t0.Add(5*time.Hour + 30*time.Minute):     "fourth.victim.test",
		t0.Add(5*time.Hour + 30*time.Minute + 1): "fifth.other.test",
	}
	events := map[time.Time]func(){}
	for at, d := range victims {
		owner := "victim"
		if strings.HasSuffix(d, ".other.test") {
			owner = "other"
		}
		events[at] = func() { m.Want(owner, d) }
	}
	end := t0.Add(6 * time.Hour)
	start := time.Now()
	orders := m.run(t, end, events)
	t.Logf("%d orders in %s of fake time (%s real)", len(orders), end.Sub(t0), time.Since(start).Round(time.Millisecond))

	// The account stays within the bucket: any run of orders between
	// two of them holds at most the limit plus the refill in between.
	interval := DefaultOrderWindow / DefaultOrderLimit
	for i := range orders {
		for j := i + DefaultOrderLimit; j < len(orders); j++ {
			allowed := DefaultOrderLimit + int(orders[j].at.Sub(orders[i].at)/interval)
			if n := j - i + 1; n > allowed {
				t.Fatalf("%d orders from %s to %s, the bucket allows %d", n, orders[i].at.Sub(t0), orders[j].at.Sub(t0), allowed)
			}
		}
	}
	inFirst := 0
	for _, o := range orders {
		if o.at.Before(t0.Add(DefaultOrderWindow)) {
			inFirst++
		}
	}
	if max := 2 * DefaultOrderLimit; inFirst > max {
		t.Errorf("%d orders in the first 3 hours, want at most %d", inFirst, max)
	}

	// Each victim's first order comes after at most one order of the
	// attacker, within one refill.
	for at, d := range victims {
		between, found := 0, false
		for _, o := range orders {
			if o.at.Before(at) {
				continue
			}
			if o.domain == d {
				found = true
				if wait := o.at.Sub(at); wait > interval {
					t.Errorf("%s wanted at +%s, ordered %s later; want at most %s", d, at.Sub(t0), wait, interval)
				}
				break
			}
			between++
		}
		if !found {
			t.Errorf("%s wanted at +%s was never ordered", d, at.Sub(t0))
		} else if between > 1 {
			t.Errorf("%s waited for %d other orders, want at most 1", d, between)
		}
		if st := m.Status(d); st.Certificate == nil {
			t.Errorf("%s has no certificate: %+v", d, st)
		}
	}
	// The attacker's domains still fail on their own schedules.
	if st := m.Status(domains[0]); st.Failures == 0 || st.Failures != m.ca.orders(domains[0]) {
		t.Errorf("%s: %+v after %d orders", domains[0], st, m.ca.orders(domains[0]))
	}
}

// TestBudgetSurvivesRestart: a restart does not refill the bucket, so a
// crash loop does not start a burst of orders each time.
func TestBudgetSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{OrderLimit: 3, OrderWindow: 3 * time.Minute}
	m := newTestManager(t, dir, cfg, nil)
	m.ca.setFail(errValidation)
	m.Want(tenant, "a.test", "b.test", "c.test", "d.test")
	for range 3 {
		if d := m.step(t); d == "" {
			t.Fatal("no order while the bucket is full")
		}
	}
	if d := m.step(t); d != "" {
		t.Fatalf("ordered %s with the bucket empty", d)
	}
	m.Close()
	m2 := newTestManager(t, dir, cfg, m.clock)
	if d := m2.step(t); d != "" {
		t.Fatalf("after a restart, ordered %s with the bucket empty", d)
	}
	m2.clock.Add(time.Minute)
	if d := m2.step(t); d != "d.test" {
		t.Fatalf("one refill later ordered %q, want d.test", d)
	}
}

// TestRateLimitedIsNotAFailure: a rateLimited answer defers the domain and
// its owner as its Retry-After says, without counting as the domain's
// failure, and another owner orders after one refill.
func TestRateLimitedIsNotAFailure(t *testing.T) {
	const retry = 20 * time.Minute
	m := newTestManager(t, "", Config{OrderLimit: 10, OrderWindow: 10 * time.Minute}, nil)
	limited := true
	m.ca.failFor = func(d string) error {
		if limited && strings.HasSuffix(d, ".busy.test") {
			return asRateLimited(&acme.RateLimitedError{
				ProblemDetails: &acme.ProblemDetails{Type: acme.RateLimitedErr, Detail: "too many certificates already issued", HTTPStatus: http.StatusTooManyRequests},
				RetryAfter:     "1200",
			})
		}
		return nil
	}
	m.Want("busy", "a.busy.test", "b.busy.test")
	if d := m.step(t); d != "a.busy.test" {
		t.Fatalf("ordered %q, want a.busy.test", d)
	}
	st := m.Status("a.busy.test")
	if st.Failures != 0 || !st.NextAttempt.Equal(t0.Add(retry)) || !strings.Contains(st.LastError, "rate limited") {
		t.Fatalf("after rateLimited: %+v, want no failure and the next attempt in %s", st, retry)
	}
	// The owner's other domain waits too; the account waits one refill.
	if d := m.step(t); d != "" {
		t.Fatalf("ordered %s at once after a rateLimited answer", d)
	}
	m.Want("calm", "x.calm.test")
	m.clock.Add(time.Minute)
	if d := m.step(t); d != "x.calm.test" {
		t.Fatalf("ordered %q one refill later, want x.calm.test", d)
	}
	m.clock.Add(retry - 2*time.Minute)
	if d := m.step(t); d != "" {
		t.Fatalf("ordered %s before Retry-After ended", d)
	}
	limited = false
	m.clock.Add(time.Minute)
	// b was never ordered: it goes first.
	for _, want := range []string{"b.busy.test", "a.busy.test"} {
		if d := m.step(t); d != want {
			t.Fatalf("ordered %q when Retry-After ended, want %s", d, want)
		}
	}
	if st := m.Status("a.busy.test"); st.Certificate == nil || st.Failures != 0 {
		t.Errorf("after the retry: %+v", st)
	}
}

func TestAsRateLimited(t *testing.T) {
	problem := &acme.ProblemDetails{Type: acme.RateLimitedErr, HTTPStatus: http.StatusTooManyRequests}
	tests := []struct {
		name string
		err  error
		want time.Duration
		ok   bool
	}{
		{"seconds", &acme.RateLimitedError{ProblemDetails: problem, RetryAfter: "90"}, 90 * time.Second, true},
		{"no Retry-After", &acme.RateLimitedError{ProblemDetails: problem}, 0, true},
		{"wrapped", fmt.Errorf("new order: %w", &acme.RateLimitedError{ProblemDetails: problem, RetryAfter: "5"}), 5 * time.Second, true},
		{"another problem", &acme.ProblemDetails{Type: "urn:ietf:params:acme:error:unauthorized"}, 0, false},
		{"plain", errors.New("x"), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rl *rateLimitedError
			ok := errors.As(asRateLimited(tt.err), &rl)
			if ok != tt.ok || (ok && rl.retryAfter != tt.want) {
				t.Errorf("asRateLimited: %v %+v, want %v %s", ok, rl, tt.ok, tt.want)
			}
		})
	}
}
