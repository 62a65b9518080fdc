// Package store is the gateway's state: one embedded, transactional bbolt
// file under the module's root. Each package that keeps state owns a bucket
// of it (the routes callers asked for, the metering totals, the schedule of
// certificate orders); a transaction may span several buckets, so that a
// change and what follows from it are committed together, with one fsync.
//
// The file is locked while a gateway has it open: a second gateway started
// on the same root is refused at once instead of waiting.
package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// FileName is the store's file under the module's root.
const FileName = "gateway.db"

// lockTimeout is how long Open waits for the file lock: long enough for a
// gateway that is exiting to let go, short enough that a second gateway
// fails at once rather than hanging under zinit.
const lockTimeout = 500 * time.Millisecond

// ErrClosed says the store was closed.
var ErrClosed = errors.New("the store is closed")

// ErrLocked says another process holds the store.
var ErrLocked = errors.New("another gateway holds the store (one gateway per --root)")

// Store is the gateway's state file.
type Store struct {
	db   atomic.Pointer[bolt.DB]
	path string
	// created is set when Open made a new file.
	created bool
	// setAside is where a store that could not be opened went, and
	// setAsideErr why.
	setAside    string
	setAsideErr error
}

// Tx is a transaction of the store.
type Tx = bolt.Tx

// Bucket is one package's part of the store.
type Bucket = bolt.Bucket

// Open opens the store at path, creating it when needed. It refuses at
// once, with ErrLocked, a file another process holds open. A file that
// cannot be opened or does not pass bbolt's consistency check (a disk that
// lost writes, a file cut short) is set aside, bytes intact, as
// <path>.bad-<UTC time>, and a new store is made in its place: the gateway
// starts, and rebuilds what it can (SetAside says so).
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating the folder of %s: %w", path, err)
	}
	s, err := open(path)
	if err == nil || errors.Is(err, ErrLocked) {
		return s, err
	}
	aside := path + ".bad-" + time.Now().UTC().Format("20060102T150405Z")
	if rerr := os.Rename(path, aside); rerr != nil {
		return nil, errors.Join(err, fmt.Errorf("setting %s aside: %w", path, rerr))
	}
	s, nerr := open(path)
	if nerr != nil {
		return nil, nerr
	}
	s.setAside, s.setAsideErr = aside, err
	return s, nil
}

// open opens path and checks it.
func open(path string) (*Store, error) {
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, fs.ErrNotExist)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("opening %s: %w", path, ErrLocked)
	case err != nil:
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if err := check(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("checking %s: %w", path, err)
	}
	s := &Store{path: path, created: created}
	s.db.Store(db)
	return s, nil
}

// check runs bbolt's consistency check, which reads every page: the store
// is small (routes, totals, schedules), so it costs milliseconds at start.
func check(db *bolt.DB) (err error) {
	defer func() {
		// A page that cannot be read at all panics inside bbolt.
		if r := recover(); r != nil {
			err = fmt.Errorf("unreadable page: %v", r)
		}
	}()
	return db.View(func(tx *bolt.Tx) error {
		var errs []error
		for e := range tx.Check() {
			errs = append(errs, e)
			if len(errs) == 10 {
				break
			}
		}
		return errors.Join(errs...)
	})
}

// SetAside returns where Open set aside a store it could not open, and
// why; "" when it opened the store that was there.
func (s *Store) SetAside() (string, error) { return s.setAside, s.setAsideErr }

// Path returns the store's file.
func (s *Store) Path() string { return s.path }

// Created tells whether Open made the file: a root without a store yet, or
// one whose store Open set aside. (What earlier versions left in files is
// imported until the store says it was, whatever this says.)
func (s *Store) Created() bool { return s.created }

// Update runs fn in a read-write transaction and commits it, durably, when
// fn returns nil. fn must not keep tx or any value it read past its return.
func (s *Store) Update(fn func(tx *Tx) error) error {
	db := s.db.Load()
	if db == nil {
		return ErrClosed
	}
	return db.Update(fn)
}

// View runs fn in a read-only transaction.
func (s *Store) View(fn func(tx *Tx) error) error {
	db := s.db.Load()
	if db == nil {
		return ErrClosed
	}
	return db.View(fn)
}

// Close closes the store; it is safe to call more than once.
func (s *Store) Close() error {
	db := s.db.Swap(nil)
	if db == nil {
		return nil
	}
	return db.Close()
}

// Put stores value under key in bucket name, creating the bucket.
func Put(tx *Tx, name string, key, value []byte) error {
	b, err := tx.CreateBucketIfNotExists([]byte(name))
	if err != nil {
		return fmt.Errorf("bucket %s: %w", name, err)
	}
	return b.Put(key, value)
}

// Get returns a copy of the value of key in bucket name; nil when either is
// missing.
func Get(tx *Tx, name string, key []byte) []byte {
	b := tx.Bucket([]byte(name))
	if b == nil {
		return nil
	}
	v := b.Get(key)
	if v == nil {
		return nil
	}
	return append([]byte(nil), v...)
}

// Delete removes key from bucket name; a missing one is not an error.
func Delete(tx *Tx, name string, key []byte) error {
	b := tx.Bucket([]byte(name))
	if b == nil {
		return nil
	}
	return b.Delete(key)
}

// ForEach calls fn with each key and value of bucket name, in key order.
// The slices are valid only during the call.
func ForEach(tx *Tx, name string, fn func(key, value []byte) error) error {
	b := tx.Bucket([]byte(name))
	if b == nil {
		return nil
	}
	return b.ForEach(fn)
}
