package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSecondOpenRefusedAtOnce guards the one gateway per root: a second
// open of a held store fails with ErrLocked within the lock timeout,
// instead of waiting for the first to exit.
func TestSecondOpenRefusedAtOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Created() {
		t.Fatal("a new store not reported as created")
	}
	start := time.Now()
	_, err = Open(path)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("second open took %s", d)
	}
	s.Close()
	s2, err := Open(path)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	defer s2.Close()
	if s2.Created() {
		t.Fatal("an existing store reported as created")
	}
	if err := s.Update(func(*Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("update of a closed store: %v", err)
	}
}

// TestBlobTakesOverLegacyFile guards the upgrade of a value kept in a file:
// it is read from the file until the store holds it, then the file is set
// aside with its bytes and never read again.
func TestBlobTakesOverLegacyFile(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	legacy := filepath.Join(dir, "ledger.json")
	if err := os.WriteFile(legacy, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := Blob{Store: s, Bucket: "meter", Key: "ledger", Legacy: legacy}
	if data, err := b.Load(); err != nil || string(data) != "old" {
		t.Fatalf("Load = %q, %v", data, err)
	}
	if err := b.Save([]byte("new")); err != nil {
		t.Fatal(err)
	}
	if data, err := b.Load(); err != nil || string(data) != "new" {
		t.Fatalf("Load after Save = %q, %v", data, err)
	}
	if data, err := os.ReadFile(legacy + ImportedSuffix); err != nil || string(data) != "old" {
		t.Fatalf("legacy file not kept aside: %q, %v", data, err)
	}
	if _, err := os.Stat(legacy); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("legacy file still in place: %v", err)
	}
	empty := Blob{Store: s, Bucket: "certs", Key: "state"}
	if data, err := empty.Load(); err != nil || data != nil {
		t.Fatalf("Load of nothing = %q, %v", data, err)
	}
}

// TestBadStoreSetAside guards the start against a store that cannot be
// opened: it is set aside with its bytes and a new one is made, so that the
// gateway starts and rebuilds its routes, never a node without routes.
func TestBadStoreSetAside(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func(t *testing.T, path string)
	}{
		{"cut short", func(t *testing.T, path string) {
			if err := os.Truncate(path, 100); err != nil {
				t.Fatal(err)
			}
		}},
		{"garbage", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte(strings.Repeat("not bbolt ", 2000)), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			s, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Update(func(tx *Tx) error { return Put(tx, "routes", []byte("a"), []byte("{}")) }); err != nil {
				t.Fatal(err)
			}
			s.Close()
			tc.corrupt(t, path)
			bad, _ := os.ReadFile(path)
			s, err = Open(path)
			if err != nil {
				t.Fatalf("a bad store stopped the start: %v", err)
			}
			defer s.Close()
			aside, why := s.SetAside()
			if aside == "" || why == nil || !s.Created() {
				t.Fatalf("SetAside = %q, %v; created %v", aside, why, s.Created())
			}
			if kept, _ := os.ReadFile(aside); string(kept) != string(bad) {
				t.Fatal("the bad store was not kept with its bytes")
			}
			if err := s.Update(func(tx *Tx) error { return Put(tx, "routes", []byte("b"), []byte("{}")) }); err != nil {
				t.Fatal(err)
			}
		})
	}
}
