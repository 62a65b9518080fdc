package acmedns

import (
	"context"
	"fmt"
	"sync"
)

// lifecycle is the part of Server and APIServer that owns their Run: a
// server runs once, tells when it listens, and may be closed before, during
// or after Run, Close waiting for Run to end so that the caller knows the
// port is free again.
type lifecycle struct {
	name string // "dns server", for errors

	ready     chan struct{} // closed by listening
	closing   chan struct{} // closed by Close
	closeOnce sync.Once

	mu      sync.Mutex
	addr    string
	running bool
	done    chan struct{} // closed when Run returns, nil before Run
}

// newLifecycle returns the lifecycle of a server named name in errors.
func newLifecycle(name string) lifecycle {
	return lifecycle{name: name, ready: make(chan struct{}), closing: make(chan struct{})}
}

// Ready returns a channel closed once the server listens (the DNS server:
// on both UDP and TCP); Addr is set by then. It is never closed if Run
// fails before that.
func (l *lifecycle) Ready() <-chan struct{} { return l.ready }

// Addr returns the address the server listens on (the DNS server's UDP and
// TCP share it), or "" before it listens.
func (l *lifecycle) Addr() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.addr
}

// Close stops a running server and waits for Run to return. It is safe to
// call more than once, and before Run (Run then returns at once).
func (l *lifecycle) Close() error {
	l.closeOnce.Do(func() { close(l.closing) })
	l.mu.Lock()
	done := l.done
	l.mu.Unlock()
	if done != nil {
		<-done
	}
	return nil
}

// run calls serve once, with a context that also ends on Close; serve
// calls listening once it listens and returns when the context ends. run
// refuses a second call, and returns nil at once when Close came first.
func (l *lifecycle) run(ctx context.Context, serve func(ctx context.Context) error) error {
	l.mu.Lock()
	if l.running {
		l.mu.Unlock()
		return fmt.Errorf("running %s: already run", l.name)
	}
	l.running = true
	l.done = make(chan struct{})
	l.mu.Unlock()
	defer close(l.done)

	select {
	case <-l.closing:
		return nil
	default:
	}
	ctx, cancel := context.WithCancel(ctx)
	var watch sync.WaitGroup
	watch.Go(func() {
		select {
		case <-l.closing:
			cancel()
		case <-ctx.Done():
		}
	})
	// In this order: end the watcher, wait for it, then close done.
	defer watch.Wait()
	defer cancel()
	return serve(ctx)
}

// listening records the address the server listens on and closes Ready.
func (l *lifecycle) listening(addr string) {
	l.mu.Lock()
	l.addr = addr
	l.mu.Unlock()
	close(l.ready)
}
