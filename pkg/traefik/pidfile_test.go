package traefik

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPidFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, PIDFileName)

	if _, err := readPidFile(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("reading a missing pidfile: %v, want fs.ErrNotExist", err)
	}
	want := pidRecord{PID: 4242, Hash: strings.Repeat("ab", 32)}
	if err := writePidFile(path, want); err != nil {
		t.Fatalf("writePidFile: %v", err)
	}
	got, err := readPidFile(path)
	if err != nil || got != want {
		t.Fatalf("readPidFile = %+v, %v; want %+v", got, err, want)
	}
	// Overwriting replaces the record and leaves no temporary file behind.
	want.PID = 4343
	if err := writePidFile(path, want); err != nil {
		t.Fatalf("writePidFile: %v", err)
	}
	if got, _ := readPidFile(path); got != want {
		t.Fatalf("readPidFile = %+v, want %+v", got, want)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("state folder holds %d files, want only the pidfile", len(entries))
	}
}

func TestReadPidFileRejects(t *testing.T) {
	tests := []struct{ name, content string }{
		{"empty", ""},
		{"not JSON", "1234\n"},
		{"pid zero", `{"pid":0,"hash":"x"}`},
		{"negative pid", `{"pid":-5,"hash":"x"}`},
		{"pid as string", `{"pid":"12","hash":"x"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), PIDFileName)
			if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			if rec, err := readPidFile(path); err == nil {
				t.Errorf("readPidFile accepted %q as %+v", tt.content, rec)
			}
		})
	}
}
