package traefik

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
	"gopkg.in/yaml.v3"

	"github.com/threefoldtech/gateway/internal/atomicfile"
)

// FileExt is the extension of the dynamic-configuration files the gateway
// writes. Traefik's file provider loads .yaml, .yml and .toml files only.
const FileExt = ".yaml"

// Marshal renders a dynamic configuration as YAML.
func Marshal(cfg *Configuration) ([]byte, error) { return marshalValue(cfg) }

// marshalValue renders v as YAML, indented by two spaces.
func marshalValue(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encoding configuration: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encoding configuration: %w", err)
	}
	return buf.Bytes(), nil
}

// Unmarshal reads a dynamic configuration back. Keys the model does not know
// are an error: the gateway only reads files it wrote itself.
func Unmarshal(data []byte) (*Configuration, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var cfg Configuration
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("decoding configuration: %w", err)
	}
	return &cfg, nil
}

// Dir is a folder Traefik watches. Its writes are crash-consistent: a reader
// (Traefik, or the gateway after a crash) sees the old file or the new one,
// never a partial one.
//
// Files are written in a staging folder beside it and renamed in, so Traefik
// sees one event per change: every event in the folder makes Traefik re-read
// all of it and rebuild every router, and a temporary file in the folder
// would cost several such reloads per route.
type Dir struct {
	path    string
	staging string
	// syncer syncs the folder for writes that leave it to Sync.
	syncer *atomicfile.Syncer
}

// OpenDir creates path and its staging folder, path's sibling
// ".<name>-staging", if needed, and removes the temporary files an
// interrupted write left behind.
func OpenDir(path string) (*Dir, error) {
	path = filepath.Clean(path)
	d := &Dir{path: path, staging: filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+"-staging"), syncer: atomicfile.NewSyncer(path)}
	for _, dir := range []string{d.path, d.staging} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", dir, err)
		}
	}
	// Earlier versions wrote temporary files in the folder itself.
	legacy, err := filepath.Glob(filepath.Join(path, ".*"+atomicfile.TempSuffix))
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", path, err)
	}
	staged, err := filepath.Glob(filepath.Join(d.staging, "*"+atomicfile.TempSuffix))
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", d.staging, err)
	}
	for _, f := range append(legacy, staged...) {
		if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("removing stale %s: %w", f, err)
		}
	}
	return d, nil
}

// Path returns the folder's path.
func (d *Dir) Path() string { return d.path }

// File returns the path of the file that holds name.
func (d *Dir) File(name string) string {
	return filepath.Join(d.path, name+FileExt)
}

// ErrNotDurable marks a Write or Remove that took place (Traefik sees it) but
// whose folder sync failed: the change may not survive a power cut. Any other
// error of Write or Remove means nothing changed.
var ErrNotDurable = atomicfile.ErrNotDurable

// Write replaces the file of name with data: a temporary file in the
// staging folder, synced, renamed into place, and the folder synced so the
// rename itself survives a crash. An error that wraps ErrNotDurable means
// the new file is in place.
func (d *Dir) Write(name string, data []byte) error {
	if err := checkName(name); err != nil {
		return err
	}
	return atomicfile.WriteStaged(d.staging, d.File(name), data, 0o644)
}

// Sync makes the changes made so far by writes that left the folder's sync
// to it (writeNoSync, removeNoSync) survive a power cut. Concurrent callers
// share syncs. An error wraps ErrNotDurable: the changes took place.
func (d *Dir) Sync() error { return d.syncer.Sync() }

// Remove deletes the file of name. A missing file is not an error. An error
// that wraps ErrNotDurable means the file is gone.
func (d *Dir) Remove(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	return atomicfile.Remove(d.File(name))
}

// maxFileBytes bounds what Read takes in: a route file is a few kilobytes.
const maxFileBytes = 1 << 20

// Read returns the content of the file of name. Only a regular file is read:
// not a link (it is not followed), nor a pipe or a device, nor anything
// larger than maxFileBytes.
func (d *Dir) Read(name string) ([]byte, error) {
	data, _, err := d.readStamped(name)
	return data, err
}

// readStamped is Read, with the stamp of the file it read, taken before
// reading: a change made while it reads gives the file another stamp.
func (d *Dir) readStamped(name string) ([]byte, Stamp, error) {
	if err := checkName(name); err != nil {
		return nil, Stamp{}, err
	}
	path := d.File(name)
	// O_NONBLOCK: opening a pipe planted there must not hang the caller.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, Stamp{}, fmt.Errorf("reading %s: a symbolic link", path)
		}
		return nil, Stamp{}, fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, Stamp{}, fmt.Errorf("reading %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, Stamp{}, fmt.Errorf("reading %s: not a regular file (%s)", path, fi.Mode().Type())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, Stamp{}, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(data) > maxFileBytes {
		return nil, Stamp{}, fmt.Errorf("reading %s: larger than %d bytes", path, maxFileBytes)
	}
	return data, stampOf(fi), nil
}

// writeStamped is Write, with the stamp of the file it wrote. A file put in
// its place between the rename and the look at it would be taken for the
// one written; no writer but the gateway's own is expected in that window.
func (d *Dir) writeStamped(name string, data []byte) (Stamp, error) {
	return d.stamped(name, d.Write(name, data))
}

// writeStampedVolatile is writeStamped without any sync (a file derived from
// the store, written again from it at start): Traefik reads the old content
// or the new, and the write does not wait for the disk.
func (d *Dir) writeStampedVolatile(name string, data []byte) (Stamp, error) {
	if err := checkName(name); err != nil {
		return Stamp{}, err
	}
	if err := atomicfile.WriteStagedVolatile(d.staging, d.File(name), data, 0o644); err != nil {
		return Stamp{}, err
	}
	d.syncer.Changed()
	return d.stamped(name, nil)
}

// removeNoSync is Remove without the sync of the folder, which is left to
// Sync. Any error means nothing changed.
func (d *Dir) removeNoSync(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := atomicfile.RemoveNoSync(d.File(name)); err != nil {
		return err
	}
	d.syncer.Changed()
	return nil
}

// stamped returns the stamp of the file of name after a write of it that
// returned err.
func (d *Dir) stamped(name string, err error) (Stamp, error) {
	if err != nil && !errors.Is(err, ErrNotDurable) {
		return Stamp{}, err
	}
	st, _, serr := d.stat(name)
	if serr != nil {
		// Unknown: the next look reads the file again.
		st = Stamp{}
	}
	return st, err
}

// stat returns the stamp of the entry of name, without following a link,
// and whether there is one.
func (d *Dir) stat(name string) (Stamp, bool, error) {
	fi, err := os.Lstat(d.File(name))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Stamp{}, false, nil
	case err != nil:
		return Stamp{}, false, fmt.Errorf("looking at %s: %w", d.File(name), err)
	}
	return stampOf(fi), true, nil
}

// Stamp tells one version of a file from another without reading it: its
// inode, size, modification and change times. Replacing the file (a rename
// over it) changes the inode; writing it in place changes the size or the
// times, and the change time cannot be set back. The zero Stamp is no file.
type Stamp struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64
	mode         fs.FileMode
}

// stampOf returns the stamp of fi, from Lstat or Stat.
func stampOf(fi fs.FileInfo) Stamp {
	st := Stamp{size: fi.Size(), mtime: fi.ModTime().UnixNano(), mode: fi.Mode()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.dev, st.ino = uint64(sys.Dev), sys.Ino
		st.ctime = sys.Ctim.Nano()
	}
	return st
}

// checkName guards the folder: a name is one path element that is not hidden.
// Callers validate names long before this; it is the last line.
func checkName(name string) error {
	if name == "" || strings.HasPrefix(name, ".") || strings.ContainsAny(name, `/\`) || strings.ContainsRune(name, 0) {
		return fmt.Errorf("invalid file name %q", name)
	}
	return nil
}
