package certs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	statestore "github.com/threefoldtech/gateway/pkg/store"
)

// TestBadStateSetAside guards the start against a schedule that does not
// read back (a truncated state.json of an earlier version, a value of the
// store cut short): it holds only schedules, so it is set aside with its
// bytes, the manager starts with none, and the certificates on disk are
// still served.
func TestBadStateSetAside(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store bool
	}{
		{"state.json", false},
		{"the store", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			m := newTestManager(t, dir, Config{}, nil)
			m.Want(tenant, "www.user.example")
			if got := m.step(t); got != "www.user.example" {
				t.Fatalf("ordered %q", got)
			}
			m.Close()
			var db *statestore.Store
			if tc.store {
				var err error
				if db, err = statestore.Open(filepath.Join(t.TempDir(), statestore.FileName)); err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				if err := (statestore.Blob{Store: db, Bucket: StoreBucket, Key: StoreKey}).Save([]byte(`{"domains": {"www.us`)); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(filepath.Join(dir, stateFileName), []byte(`{"domains": {"www.us`), 0o600); err != nil {
				t.Fatal(err)
			}

			m2 := newTestManager(t, dir, Config{Store: db}, nil)
			m2.SetWanted(map[string]string{"www.user.example": tenant})
			if len(m2.Certificates()) != 1 {
				t.Fatalf("certificates after the bad state: %v", m2.Certificates())
			}
			aside, _ := filepath.Glob(filepath.Join(dir, stateFileName+".bad-*"))
			if len(aside) != 1 {
				t.Fatalf("state set aside as %v", aside)
			}
			if data, _ := os.ReadFile(aside[0]); !strings.HasPrefix(string(data), `{"domains"`) {
				t.Fatalf("set aside without its bytes: %q", data)
			}
		})
	}
}
