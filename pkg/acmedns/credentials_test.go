package acmedns

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestNewCredentials(t *testing.T) {
	u1, p1, err := newCredentials()
	if err != nil {
		t.Fatal(err)
	}
	u2, p2, err := newCredentials()
	if err != nil {
		t.Fatal(err)
	}
	if u1 == u2 || p1 == p2 {
		t.Errorf("two calls gave the same credentials: %q/%q", u1, p1)
	}
	// Basic auth splits at the first colon; env files dislike spaces.
	if strings.ContainsAny(u1, ": \n") || strings.ContainsAny(p1, " \n") || len(p1) < 40 {
		t.Errorf("credentials %q/%q not fit for basic auth and env", u1, p1)
	}
}

func TestLoadOrCreateCredentials(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, path string)
		wantErr string // "" for success
		check   func(t *testing.T, path, user, pass string)
	}{
		{
			name: "creates a 0600 file with fresh credentials",
			check: func(t *testing.T, path, user, pass string) {
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("mode %v, want 0600", fi.Mode().Perm())
				}
				// No temporary file left behind.
				entries, _ := os.ReadDir(filepath.Dir(path))
				if len(entries) != 1 {
					t.Errorf("folder holds %d entries, want only the file", len(entries))
				}
			},
		},
		{
			// A restarted gateway must keep serving the running Traefik.
			name: "a second call returns the same credentials",
			check: func(t *testing.T, path, user, pass string) {
				u, p, err := LoadOrCreateCredentials(path)
				if err != nil {
					t.Fatal(err)
				}
				if u != user || p != pass {
					t.Errorf("second call %q/%q, first %q/%q", u, p, user, pass)
				}
			},
		},
		{
			name: "existing file is read",
			setup: func(t *testing.T, path string) {
				writeFile(t, path, `{"username":"u","password":"p"}`, 0o600)
			},
			check: func(t *testing.T, path, user, pass string) {
				if user != "u" || pass != "p" {
					t.Errorf("credentials %q/%q, want u/p", user, pass)
				}
			},
		},
		{
			name: "a too open file is narrowed to 0600",
			setup: func(t *testing.T, path string) {
				writeFile(t, path, `{"username":"u","password":"p"}`, 0o644)
			},
			check: func(t *testing.T, path, user, pass string) {
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("mode %v, want 0600", fi.Mode().Perm())
				}
			},
		},
		{
			// Overwriting would lock out a Traefik started with the old ones.
			name: "a corrupt file is an error, not overwritten",
			setup: func(t *testing.T, path string) {
				writeFile(t, path, `{"username":`, 0o600)
			},
			wantErr: "parsing credentials file",
		},
		{
			name: "a file with an empty password is an error",
			setup: func(t *testing.T, path string) {
				writeFile(t, path, `{"username":"u","password":""}`, 0o600)
			},
			wantErr: "empty",
		},
		{
			name: "a missing folder is created",
			setup: func(t *testing.T, path string) {
				if err := os.Remove(filepath.Dir(path)); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sub", "httpreq.json")
			if err := os.Mkdir(filepath.Dir(path), 0o700); err != nil {
				t.Fatal(err)
			}
			if tt.setup != nil {
				tt.setup(t, path)
			}
			user, pass, err := LoadOrCreateCredentials(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if user == "" || pass == "" {
				t.Fatalf("empty credentials %q/%q", user, pass)
			}
			if tt.check != nil {
				tt.check(t, path, user, pass)
			}
		})
	}
}

// TestLoadOrCreateCredentialsConcurrent guards against two starts writing
// different credentials: everyone must get what the file holds.
func TestLoadOrCreateCredentialsConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "httpreq.json")
	const n = 8
	got := make([][2]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			u, p, err := LoadOrCreateCredentials(path)
			if err != nil {
				t.Error(err)
			}
			got[i] = [2]string{u, p}
		})
	}
	wg.Wait()
	u, p, err := loadCredentials(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range got {
		if g != [2]string{u, p} {
			t.Errorf("caller %d got %q, file holds %q", i, g, [2]string{u, p})
		}
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}
