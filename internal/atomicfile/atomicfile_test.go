package atomicfile

import (
	"errors"
	"io/fs"
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

// A folder sync that fails after the rename must say the change is made:
// the caller's bookkeeping follows the folder, not the error. A failure
// before the rename must not say so, and must change nothing.
func TestFailedSyncAfterTheChangeIsNotDurable(t *testing.T) {
	dir, staging := t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "f")
	if err := Write(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	eio := errors.New("input/output error")
	restore := FailDirSync(dir, eio)
	defer restore()

	err := WriteStaged(staging, path, []byte("new"), 0o644)
	if !errors.Is(err, ErrNotDurable) || !errors.Is(err, eio) {
		t.Fatalf("write: err = %v, want ErrNotDurable wrapping the sync error", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "new" {
		t.Fatalf("content %q: the rename should have happened", got)
	}
	created, err := Create(filepath.Join(dir, "g"), []byte("x"), 0o644)
	if !created || !errors.Is(err, ErrNotDurable) {
		t.Fatalf("create: %v, %v", created, err)
	}
	if err := Remove(path); !errors.Is(err, ErrNotDurable) {
		t.Fatalf("remove: err = %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("file still there: %v", err)
	}
	other := t.TempDir()
	if err := Move(filepath.Join(dir, "g"), filepath.Join(other, "g")); !errors.Is(err, ErrNotDurable) {
		t.Fatalf("move: err = %v", err)
	}

	// Before the rename: the staging folder is gone, nothing changes.
	if err := WriteStaged(filepath.Join(staging, "missing"), path, []byte("x"), 0o644); err == nil || errors.Is(err, ErrNotDurable) {
		t.Fatalf("failed write: err = %v, want an error that is not ErrNotDurable", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a failed write created the file: %v", err)
	}
	restore()
	if err := Write(path, []byte("again"), 0o644); err != nil {
		t.Fatalf("after restore: %v", err)
	}
}

// Moving an entry aside must never replace what is at the target: a
// quarantined file must not overwrite an earlier one.
func TestMoveNeverReplaces(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"a": "a", "b": "b"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	err := Move(filepath.Join(dir, "a"), filepath.Join(dir, "b"))
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("err = %v, want fs.ErrExist", err)
	}
	for name, content := range map[string]string{"a": "a", "b": "b"} {
		if got, _ := os.ReadFile(filepath.Join(dir, name)); string(got) != content {
			t.Fatalf("%s holds %q", name, got)
		}
	}
	// Folders and links move as they are; a link is not followed.
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sub", "link"} {
		if err := Move(filepath.Join(dir, name), filepath.Join(dir, name+".moved")); err != nil {
			t.Fatal(err)
		}
	}
	if target, err := os.Readlink(filepath.Join(dir, "link.moved")); err != nil || target != "a" {
		t.Fatalf("link moved as %q, %v", target, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "sub.moved")); err != nil || !fi.IsDir() {
		t.Fatalf("folder moved: %v", err)
	}
}

// TestWriteStagedVolatile guards the writes of derived files: the path
// holds the new content once it returns, and no temporary file is left in
// the staging folder.
func TestWriteStagedVolatile(t *testing.T) {
	dir, staging := t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "routes~01.yaml")
	for _, content := range []string{"first\n", "second\n"} {
		if err := WriteStagedVolatile(staging, path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(path); err != nil || string(got) != content {
			t.Fatalf("%s holds %q, %v; want %q", path, got, err, content)
		}
	}
	if left, _ := os.ReadDir(staging); len(left) != 0 {
		t.Fatalf("staging folder holds %d entries", len(left))
	}
}
