package certs

import (
	"errors"
	"time"

	"github.com/go-acme/lego/v4/acme"
	"github.com/go-acme/lego/v4/acme/api"
)

// budget is the ACME account's allowance of new orders, counted as Let's
// Encrypt counts its "New Orders per Account" limit: a token bucket that
// holds at most limit orders and refills one every window/limit. Every
// order takes one, renewals included. It is kept with the schedule, so that
// a restart does not refill it.
type budget struct {
	// Tokens is how many orders may start at At.
	Tokens float64 `json:"tokens"`
	// At is when Tokens was counted.
	At time.Time `json:"at,omitzero"`
}

// fullBudget is the allowance of an account that ordered nothing lately.
func fullBudget(limit int, now time.Time) budget {
	return budget{Tokens: float64(limit), At: now}
}

// refilled returns the tokens at now. A clock that went back refills
// nothing until it passes At again.
func (b budget) refilled(limit int, window time.Duration, now time.Time) float64 {
	if !now.After(b.At) {
		return b.Tokens
	}
	add := float64(now.Sub(b.At)) / float64(window) * float64(limit)
	return min(float64(limit), b.Tokens+add)
}

// availableAt returns when the next order may start: now or later.
func (b budget) availableAt(limit int, window time.Duration, now time.Time) time.Time {
	t := b.refilled(limit, window, now)
	if t >= 1 {
		return now
	}
	interval := float64(window) / float64(limit)
	// Rounded up: at the returned time the token is whole.
	wait := time.Duration((1-t)*interval) + time.Nanosecond
	if b.At.After(now) {
		return b.At.Add(wait)
	}
	return now.Add(wait)
}

// take spends one order at now; the caller checked availableAt.
func (b *budget) take(limit int, window time.Duration, now time.Time) {
	t := b.refilled(limit, window, now)
	if now.After(b.At) {
		b.At = now
	}
	b.Tokens = max(0, t-1)
}

// drain empties the bucket at now: after a rateLimited answer, the next
// order waits for a whole token.
func (b *budget) drain(now time.Time) {
	b.Tokens = 0
	if now.After(b.At) {
		b.At = now
	}
}

// rateLimitedError is a rateLimited answer of the ACME server: the request
// was refused before anything was validated, and RetryAfter (zero when the
// server gave none) says when to ask again.
type rateLimitedError struct {
	err        error
	retryAfter time.Duration
}

func (e *rateLimitedError) Error() string { return e.err.Error() }
func (e *rateLimitedError) Unwrap() error { return e.err }

// asRateLimited returns err as a rateLimitedError when the ACME server
// answered rateLimited, err itself otherwise.
func asRateLimited(err error) error {
	var rl *acme.RateLimitedError
	if !errors.As(err, &rl) {
		return err
	}
	var after time.Duration
	if rl.RetryAfter != "" {
		if d, perr := api.ParseRetryAfter(rl.RetryAfter); perr == nil && d > 0 {
			after = d
		}
	}
	return &rateLimitedError{err: err, retryAfter: after}
}
