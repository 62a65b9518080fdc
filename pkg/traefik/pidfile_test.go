package traefik

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
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
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("readPidFile = %+v, %v; want %+v", got, err, want)
	}
	// Overwriting replaces the record and leaves no temporary file behind.
	// The predecessors draining are kept, each with its start time and
	// deadline.
	want.PID = 4343
	want.Draining = []drainRecord{{PID: 4242, Start: 123456, Until: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}}
	if err := writePidFile(path, want); err != nil {
		t.Fatalf("writePidFile: %v", err)
	}
	if got, _ := readPidFile(path); !reflect.DeepEqual(got, want) {
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

// The pidfile of a gateway older than the drain reads: no predecessor
// drains.
func TestReadPidFileWithoutDraining(t *testing.T) {
	path := filepath.Join(t.TempDir(), PIDFileName)
	if err := os.WriteFile(path, []byte(`{"pid":12,"hash":"x"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec, err := readPidFile(path)
	if err != nil || rec.PID != 12 || rec.Hash != "x" || rec.Draining != nil {
		t.Fatalf("readPidFile = %+v, %v", rec, err)
	}
}
