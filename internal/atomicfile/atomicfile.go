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
	"sync"
)

// TempSuffix ends the name of every temporary file this package creates, so
// that an owner can remove the ones an interrupted write left behind.
const TempSuffix = ".tmp"

// ErrNotDurable marks a change that reached its folder (the rename, link or
// removal is visible to every reader) but whose folder could not be synced,
// so the change may not survive a power cut. An error that wraps it means
// the change was made; any other error means nothing changed.
var ErrNotDurable = errors.New("the change may not survive a power cut")

// Write replaces path with data, with mode perm. The temporary file is made
// in path's own folder.
func Write(path string, data []byte, perm fs.FileMode) error {
	return WriteStaged(filepath.Dir(path), path, data, perm)
}

// WriteStaged is Write with the temporary file made in staging, a folder on
// the same file system as path. A watcher of path's folder then sees one
// event per write, the rename. An error that wraps ErrNotDurable means path
// holds data.
func WriteStaged(staging, path string, data []byte, perm fs.FileMode) error {
	if err := renameStaged(staging, path, data, perm, true); err != nil {
		return err
	}
	return syncAfter(path, "written")
}

// WriteStagedNoSync is WriteStaged without the sync of path's folder: path
// holds data once it returns, and a sync of the folder that starts after
// that (SyncDir, or a Syncer) makes it survive a power cut. Any error means
// nothing changed.
func WriteStagedNoSync(staging, path string, data []byte, perm fs.FileMode) error {
	return renameStaged(staging, path, data, perm, true)
}

// WriteStagedVolatile is WriteStaged without any sync: a reader of path sees
// the old content or data, never a part of it, but a power cut may leave
// either, or an empty file. It is for files derived from a source that is
// durable on its own and that are written again from it after a crash, so
// that their writes need not wait for the disk.
func WriteStagedVolatile(staging, path string, data []byte, perm fs.FileMode) error {
	return renameStaged(staging, path, data, perm, false)
}

// renameStaged writes data to a temporary file in staging, synced when
// syncFile is set, and renames it to path.
func renameStaged(staging, path string, data []byte, perm fs.FileMode, syncFile bool) error {
	tmp, err := writeTempSync(staging, path, data, perm, syncFile)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("renaming %s into place: %w", path, err)
	}
	return nil
}

// RemoveNoSync is Remove without the sync of path's folder, which a later
// SyncDir or Syncer makes durable.
func RemoveNoSync(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}

// Create writes data to path, with mode perm, only if path does not exist
// yet; created is false when it did, and the existing file is left as it is.
// Two processes creating one path at once cannot both succeed. An error that
// wraps ErrNotDurable comes with created true.
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
	return true, syncAfter(path, "created")
}

// Remove deletes path and syncs its folder. A missing file is not an error.
// An error that wraps ErrNotDurable means path is gone.
func Remove(path string) error {
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return syncAfter(path, "removed")
}

// Move renames the entry oldpath (a file, a folder, a link: whatever it is)
// to newpath, which must not exist: an existing newpath is never replaced,
// and the error then wraps fs.ErrExist. Both folders are synced; an error
// that wraps ErrNotDurable means the entry has moved.
func Move(oldpath, newpath string) error {
	if err := renameNoReplace(oldpath, newpath); err != nil {
		return fmt.Errorf("moving %s to %s: %w", oldpath, newpath, err)
	}
	if err := SyncDir(filepath.Dir(newpath)); err != nil {
		return fmt.Errorf("%s moved to %s, but %w: %w", oldpath, newpath, ErrNotDurable, err)
	}
	return syncAfter(oldpath, "moved away")
}

// renameIfAbsent renames oldpath to newpath after checking that newpath
// does not exist: renameNoReplace where the system has no better way.
func renameIfAbsent(oldpath, newpath string) error {
	if _, err := os.Lstat(newpath); err == nil {
		return fs.ErrExist
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.Rename(oldpath, newpath)
}

// syncAfter syncs the folder of path after a change to path that is already
// visible, and says so in the error.
func syncAfter(path, done string) error {
	if err := SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("%s %s, but %w: %w", path, done, ErrNotDurable, err)
	}
	return nil
}

// SyncDir flushes a folder's entries (creations, renames, removals) to disk.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err := injectedSyncFault(dir); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// syncFaults are the folders whose sync fails on purpose, with the error
// each fails with (FailDirSync).
var syncFaults struct {
	sync.Mutex
	dirs map[string]error
}

// FailDirSync makes every sync of folder dir fail with err, as fsync(2) does
// on a failing disk, until the returned function is called. It is a seam for
// tests, here and in the packages above: no file system a test can use makes
// fsync of a folder fail after a rename into it succeeded, and a caller must
// show that it handles exactly that. The daemon never calls it.
func FailDirSync(dir string, err error) (restore func()) {
	dir = filepath.Clean(dir)
	syncFaults.Lock()
	defer syncFaults.Unlock()
	if syncFaults.dirs == nil {
		syncFaults.dirs = make(map[string]error)
	}
	syncFaults.dirs[dir] = err
	return func() {
		syncFaults.Lock()
		defer syncFaults.Unlock()
		delete(syncFaults.dirs, dir)
	}
}

func injectedSyncFault(dir string) error {
	syncFaults.Lock()
	defer syncFaults.Unlock()
	return syncFaults.dirs[filepath.Clean(dir)]
}

// writeTemp writes data to a new temporary file in dir, named after path,
// synced and with mode perm, and returns its name. os.CreateTemp opens it
// with O_EXCL, so a planted file or link is never written through.
func writeTemp(dir, path string, data []byte, perm fs.FileMode) (string, error) {
	return writeTempSync(dir, path, data, perm, true)
}

// writeTempSync is writeTemp, whose file is synced when sync is set.
func writeTempSync(dir, path string, data []byte, perm fs.FileMode, sync bool) (string, error) {
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*"+TempSuffix)
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil && sync {
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
