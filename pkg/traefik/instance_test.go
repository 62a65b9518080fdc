package traefik

import (
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
