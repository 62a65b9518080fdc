package traefik

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMatchCmdline(t *testing.T) {
	want := traefikArgv("/usr/bin/traefik", "/var/lib/gateway/traefik/traefik.yaml")
	tests := []struct {
		name    string
		cmdline string // as in /proc/<pid>/cmdline
		match   cmdlineMatch
	}{
		{"ours", "/usr/bin/traefik\x00--configFile=/var/lib/gateway/traefik/traefik.yaml\x00", cmdlineSame},
		// An upgrade installed Traefik elsewhere: still ours, replaced.
		{"other binary, our config", "/opt/traefik\x00--configFile=/var/lib/gateway/traefik/traefik.yaml\x00", cmdlineSameConfig},
		// A recycled pid runs something else: never adopted nor signalled.
		{"sleep", "sleep\x0060\x00", cmdlineForeign},
		{"our binary, other config", "/usr/bin/traefik\x00--configFile=/etc/traefik.yaml\x00", cmdlineForeign},
		{"extra argument", "/usr/bin/traefik\x00--configFile=/var/lib/gateway/traefik/traefik.yaml\x00--log.level=DEBUG\x00", cmdlineForeign},
		{"prefix of our config", "/usr/bin/traefik\x00--configFile=/var/lib/gateway/traefik/traefik.yaml.bak\x00", cmdlineForeign},
		// Zombies and kernel threads have an empty command line.
		{"empty", "", cmdlineForeign},
		{"no trailing NUL", "/usr/bin/traefik\x00--configFile=/var/lib/gateway/traefik/traefik.yaml", cmdlineSame},
		{"empty binary", "\x00--configFile=/var/lib/gateway/traefik/traefik.yaml\x00", cmdlineForeign},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := matchCmdline(splitCmdline([]byte(tt.cmdline)), want); got != tt.match {
				t.Errorf("matchCmdline(%q) = %v, want %v", tt.cmdline, got, tt.match)
			}
		})
	}
}

func TestParseProcState(t *testing.T) {
	tests := []struct {
		stat string
		want byte
		ok   bool
	}{
		{"1234 (traefik) S 1 1234 1234 0 -1", 'S', true},
		{"1234 (traefik) Z 1 1234", 'Z', true},
		// comm may hold spaces and parentheses.
		{"77 (a) b (c) R 1 2", 'R', true},
		{"77 (a)", 0, false},
		{"no parenthesis", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, err := parseProcState([]byte(tt.stat))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseProcState(%q) = %q, %v; want %q, ok=%v", tt.stat, got, err, tt.want, tt.ok)
		}
	}
}

// The start time, field 22, names a process with its pid: a draining
// Traefik's pid reused by another is not taken for it.
func TestParseProcStartTime(t *testing.T) {
	const fields = " S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21"
	tests := []struct {
		name, stat string
		want       uint64
		ok         bool
	}{
		{"plain", "1234 (traefik)" + fields, 987654, true},
		// comm may hold spaces and parentheses.
		{"odd comm", "1234 (a) b (c)" + fields, 987654, true},
		{"cut short", "1234 (traefik) S 1 2 3", 0, false},
		{"not a number", "1234 (traefik) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 x", 0, false},
		{"no comm", "1234 traefik S", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStartTime([]byte(tt.stat))
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("parseProcStartTime(%q) = %d, %v; want %d, ok=%v", tt.stat, got, err, tt.want, tt.ok)
			}
		})
	}
	// Our own start time reads.
	if _, err := procStartTime(os.Getpid()); err != nil {
		t.Errorf("procStartTime(self): %v", err)
	}
}

func FuzzParseProcState(f *testing.F) {
	f.Add([]byte("1234 (traefik) S 1 1234 1234 0 -1"))
	f.Add([]byte("77 (a) b (c) Z 1 2"))
	f.Add([]byte("1 ()) )"))
	f.Add([]byte(")"))
	f.Add([]byte(") "))
	f.Fuzz(func(t *testing.T, stat []byte) {
		// comm ends at the last ')'; the state is the byte after the space.
		state, err := parseProcState(stat)
		i := strings.LastIndexByte(string(stat), ')')
		wellFormed := i >= 0 && i+2 < len(stat) && stat[i+1] == ' '
		if (err == nil) != wellFormed || (err == nil && state != stat[i+2]) {
			t.Fatalf("parseProcState(%q) = %q, %v", stat, state, err)
		}
	})
}

func FuzzMatchCmdline(f *testing.F) {
	want := traefikArgv("/usr/bin/traefik", "/var/lib/gateway/traefik/traefik.yaml")
	f.Add([]byte("/usr/bin/traefik\x00--configFile=/var/lib/gateway/traefik/traefik.yaml\x00"))
	f.Add([]byte("\x00--configFile=/var/lib/gateway/traefik/traefik.yaml\x00"))
	f.Add([]byte("\x00\x00\x00"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, cmdline []byte) {
		got := splitCmdline(cmdline)
		switch matchCmdline(got, want) {
		case cmdlineSame:
			if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
				t.Fatalf("%q taken for our command line", cmdline)
			}
		case cmdlineSameConfig:
			if len(got) != 2 || got[1] != want[1] || got[0] == "" {
				t.Fatalf("%q taken for our configuration", cmdline)
			}
		}
	})
}

func TestParseStatusUIDs(t *testing.T) {
	tests := []struct {
		name      string
		status    string
		uid, euid int
		ok        bool
	}{
		{"root", "Name:\ttraefik\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n", 0, 0, true},
		// setuid: real and effective differ; both must be ours.
		{"setuid", "Uid:\t1000\t0\t0\t0\n", 1000, 0, true},
		{"nobody", "Uid:\t65534\t65534\t65534\t65534\n", 65534, 65534, true},
		{"no trailing newline", "Uid:\t7\t8\t9\t10", 7, 8, true},
		{"no Uid line", "Name:\ttraefik\nGid:\t0\t0\t0\t0\n", 0, 0, false},
		{"Uid inside another line", "Name:\tUid:\t0\t0\t0\t0\n", 0, 0, false},
		{"three ids", "Uid:\t0\t0\t0\n", 0, 0, false},
		{"not a number", "Uid:\tx\t0\t0\t0\n", 0, 0, false},
		{"negative", "Uid:\t-1\t0\t0\t0\n", 0, 0, false},
		{"beyond 32 bits", "Uid:\t4294967296\t0\t0\t0\n", 0, 0, false},
		{"empty", "", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			uid, euid, err := parseStatusUIDs([]byte(tt.status))
			if (err == nil) != tt.ok || uid != tt.uid || euid != tt.euid {
				t.Errorf("parseStatusUIDs = %d, %d, %v; want %d, %d, ok=%v", uid, euid, err, tt.uid, tt.euid, tt.ok)
			}
		})
	}
}

func FuzzParseStatusUIDs(f *testing.F) {
	f.Add([]byte("Name:\ttraefik\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n"))
	f.Add([]byte("Uid:\t1000\t0\t0\t0"))
	f.Add([]byte("Uid:\t4294967295\t4294967295\t0\t0\n"))
	f.Add([]byte("Uid:\t-0\t+1\t0\t0\n"))
	f.Add([]byte("Uid:\n"))
	f.Add([]byte("Uid:Uid:\t0\t0\t0\t0\n"))
	f.Fuzz(func(t *testing.T, status []byte) {
		uid, euid, err := parseStatusUIDs(status)
		if err != nil {
			if uid != 0 || euid != 0 {
				t.Fatalf("ids %d, %d with an error", uid, euid)
			}
			return
		}
		// The ids come from a line starting "Uid:" and are uint32.
		if !strings.HasPrefix(string(status), "Uid:") && !strings.Contains(string(status), "\nUid:") {
			t.Fatalf("ids %d, %d read from %q without a Uid line", uid, euid, status)
		}
		if uid < 0 || euid < 0 || uid > math.MaxUint32 || euid > math.MaxUint32 {
			t.Fatalf("ids %d, %d out of range", uid, euid)
		}
	})
}

// /proc/<pid>/exe is the file a process runs, symbolic links resolved; its
// command line may name it through one (a Traefik an older gateway started).
func TestNamesFile(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "traefik-v3")
	if err := os.WriteFile(bin, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "traefik")
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	// t.TempDir may itself sit behind a link.
	exe, err := filepath.EvalSymlinks(bin)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, argv0, exe string
		want             bool
	}{
		{"the file itself", exe, exe, true},
		{"through a link", link, exe, true},
		{"another file", link, "/usr/bin/sleep", false},
		// exec -a: the command line names our binary, another one runs.
		{"claims our binary", exe, "/usr/bin/sleep", false},
		// Resolved against our working folder, not the process's.
		{"relative", "traefik", exe, false},
		{"gone", filepath.Join(dir, "missing"), exe, false},
	}
	for _, tt := range tests {
		if got := namesFile(tt.argv0, tt.exe); got != tt.want {
			t.Errorf("%s: namesFile(%q, %q) = %v, want %v", tt.name, tt.argv0, tt.exe, got, tt.want)
		}
	}
}
