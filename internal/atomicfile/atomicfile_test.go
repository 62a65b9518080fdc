package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplacesAndLeavesNothingBehind(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	for _, content := range []string{"one", "two"} {
		if err := Write(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "two" {
		t.Fatalf("content %q, %v", got, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("folder holds %v", entries)
	}
}

func TestWriteStagedMakesNoTemporaryFileBesideTarget(t *testing.T) {
	dir, staging := t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "f")
	if err := WriteStaged(staging, path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(staging); len(entries) != 0 {
		t.Fatalf("staging folder holds %v", entries)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("folder holds %v", entries)
	}
}

// Two gateways starting at once must end up with the same credentials: the
// second Create must not replace the first one's file.
func TestCreateNeverReplaces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	created, err := Create(path, []byte("first"), 0o600)
	if err != nil || !created {
		t.Fatalf("first create: %v, %v", created, err)
	}
	created, err = Create(path, []byte("second"), 0o600)
	if err != nil || created {
		t.Fatalf("second create: %v, %v", created, err)
	}
	if got, _ := os.ReadFile(path); string(got) != "first" {
		t.Fatalf("content %q", got)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Fatalf("folder holds %v", entries)
	}
}

func TestRemoveMissingIsNotAnError(t *testing.T) {
	if err := Remove(filepath.Join(t.TempDir(), "missing")); err != nil {
		t.Fatal(err)
	}
}
