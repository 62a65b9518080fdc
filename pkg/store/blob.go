package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// ImportedSuffix ends the name a file an earlier version kept is renamed
// to once the store holds its content: kept for an operator, never read
// again.
const ImportedSuffix = ".imported"

// Blob is one value of the store, under Key in Bucket, that a package reads
// and replaces whole (the metering totals, the schedule of certificate
// orders). Legacy is the file an earlier version kept the value in: read
// while the store has no value, renamed with ImportedSuffix once it has.
type Blob struct {
	Store  *Store
	Bucket string
	Key    string
	// Legacy is the file the value was kept in before the store; empty
	// when there was none.
	Legacy string
}

// Load returns the value, or the legacy file's content while the store has
// none; nil when neither exists.
func (b Blob) Load() ([]byte, error) {
	var data []byte
	if err := b.Store.View(func(tx *Tx) error {
		data = Get(tx, b.Bucket, []byte(b.Key))
		return nil
	}); err != nil {
		return nil, fmt.Errorf("reading %s/%s from the store: %w", b.Bucket, b.Key, err)
	}
	if data != nil || b.Legacy == "" {
		return data, nil
	}
	data, err := os.ReadFile(b.Legacy)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return data, err
}

// Save replaces the value, durably, in one transaction; the legacy file, if
// any is left, is then renamed out of the way.
func (b Blob) Save(data []byte) error {
	if err := b.Store.Update(func(tx *Tx) error { return Put(tx, b.Bucket, []byte(b.Key), data) }); err != nil {
		return fmt.Errorf("saving %s/%s in the store: %w", b.Bucket, b.Key, err)
	}
	if b.Legacy == "" {
		return nil
	}
	if err := os.Rename(b.Legacy, b.Legacy+ImportedSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("setting aside %s, now in the store: %w", b.Legacy, err)
	}
	return nil
}
