package store

import (
	"errors"
	"os"
	"path/filepath"
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
