// Package atomicfile replaces files so that a reader, or the next start after
// a crash, sees either the old content or the new one, never a mix: the data
// goes to a temporary file that is synced and renamed over the target, and the
// folder is synced so that the rename itself survives a power cut.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// TempSuffix ends the name of every temporary file this package creates, so
// that an owner can remove the ones an interrupted write left behind.
const TempSuffix = ".tmp"

// Write replaces path with data, with mode perm. The temporary file is made
// in path's own folder.
func Write(path string, data []byte, perm fs.FileMode) error {
	return WriteStaged(filepath.Dir(path), path, data, perm)
}

// WriteStaged is Write with the temporary file made in staging, a folder on
// the same file system as path. A watcher of path's folder then sees one
// event per write, the rename.
func WriteStaged(staging, path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(staging, path, data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("renaming %s into place: %w", path, err)
	}
	return SyncDir(filepath.Dir(path))
}

// Create writes data to path, with mode perm, only if path does not exist
// yet; created is false when it did, and the existing file is left as it is.
// Two processes creating one path at once cannot both succeed.
func Create(path string, data []byte, perm fs.FileMode) (created bool, err error) {
	tmp, err := writeTemp(filepath.Dir(path), path, data, perm)
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp)
	// A hard link, unlike a rename, fails when the target exists.
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, fmt.Errorf("creating %s: %w", path, err)
	}
	return true, SyncDir(filepath.Dir(path))
}

// Remove deletes path and syncs its folder. A missing file is not an error.
func Remove(path string) error {
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir flushes a folder's entries (creations, renames, removals) to disk.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// writeTemp writes data to a new temporary file in dir, named after path,
// synced and with mode perm, and returns its name. os.CreateTemp opens it
// with O_EXCL, so a planted file or link is never written through.
func writeTemp(dir, path string, data []byte, perm fs.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*"+TempSuffix)
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Name(), nil
}
