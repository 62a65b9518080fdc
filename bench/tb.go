package main

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// benchTB lets the bench use test/harness outside a test: the harness's
// helpers take a testing.TB, call Cleanup to stop what they start and
// Fatalf when something fails. Fatalf panics with a fatal, which catch turns
// into an error; close runs the cleanups, last registered first, as a test's
// end does. Each part of the stack that stops on its own (a gateway run, a
// floor's Traefik) has a benchTB of its own.
type benchTB struct {
	// TB is nil: the harness calls only the methods below.
	testing.TB
	name string
	dir  string
	logf func(string, ...any)

	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

// fatal is what Fatalf panics with.
type fatal struct{ msg string }

func newTB(name, dir string, logf func(string, ...any)) *benchTB {
	return &benchTB{name: name, dir: dir, logf: logf}
}

// catch runs fn and returns the failure it reported with Fatalf, if any.
func catch(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(fatal)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("%s", f.msg)
		}
	}()
	fn()
	return nil
}

func (t *benchTB) Name() string { return t.name }
func (t *benchTB) Helper()      {}

func (t *benchTB) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

// TempDir makes a new folder in the bench's work folder.
func (t *benchTB) TempDir() string {
	dir, err := os.MkdirTemp(t.dir, t.name+"-")
	if err != nil {
		t.Fatalf("creating a folder: %v", err)
	}
	return dir
}

func (t *benchTB) Logf(format string, args ...any) {
	t.logf("%s: %s", t.name, fmt.Sprintf(format, args...))
}
func (t *benchTB) Log(args ...any) { t.Logf("%s", fmt.Sprint(args...)) }

func (t *benchTB) Errorf(format string, args ...any) {
	t.Fail()
	t.Logf(format, args...)
}

func (t *benchTB) Error(args ...any) { t.Errorf("%s", fmt.Sprint(args...)) }

func (t *benchTB) Fatalf(format string, args ...any) {
	t.Fail()
	panic(fatal{fmt.Sprintf(format, args...)})
}

func (t *benchTB) Fatal(args ...any) { t.Fatalf("%s", fmt.Sprint(args...)) }
func (t *benchTB) FailNow()          { t.Fatalf("failed") }

func (t *benchTB) Fail() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed = true
}

func (t *benchTB) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

// close runs the cleanups, last registered first. It is safe to call more
// than once and on a nil benchTB.
func (t *benchTB) close() {
	if t == nil {
		return
	}
	for {
		t.mu.Lock()
		n := len(t.cleanups)
		if n == 0 {
			t.mu.Unlock()
			return
		}
		f := t.cleanups[n-1]
		t.cleanups = t.cleanups[:n-1]
		t.mu.Unlock()
		if err := catch(f); err != nil {
			t.logf("%s: cleanup: %v", t.name, err)
		}
	}
}
