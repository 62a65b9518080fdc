package traefik

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteState(t *testing.T) {
	dir := t.TempDir()
	// Left by writes a crash interrupted.
	for _, name := range []string{".traefik.yaml.123.tmp", ".traefik.env.456.tmp"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("torn"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	static := []byte("entryPoints: {}\n")
	env := []string{"A=plain", "B=it's $HOME `x`", "C=", "D=two\nlines", "E=a=b"}
	configFile, err := WriteState(dir, static, env)
	if err != nil {
		t.Fatalf("WriteState: %v", err)
	}
	if want := filepath.Join(dir, StaticFileName); configFile != want {
		t.Errorf("WriteState returned %q, want %q", configFile, want)
	}
	if got, err := os.ReadFile(configFile); err != nil || string(got) != string(static) {
		t.Errorf("static configuration %q, %v; want %q", got, err, static)
	}
	envFile := filepath.Join(dir, EnvFileName)
	wantEnv := "export A='plain'\n" +
		"export B='it'\\''s $HOME `x`'\n" +
		"export C=''\n" +
		"export D='two\nlines'\n" +
		"export E='a=b'\n"
	if got, err := os.ReadFile(envFile); err != nil || string(got) != wantEnv {
		t.Errorf("environment file %q, %v; want %q", got, err, wantEnv)
	}
	// zinit/traefik.yaml sources the file with sh: the values must come
	// back as they were, nothing expanded.
	out, err := exec.Command("sh", "-c", `. "$0" && printf '%s|%s|%s|%s|%s' "$A" "$B" "$C" "$D" "$E"`, envFile).Output()
	if err != nil {
		t.Fatalf("sourcing the environment file: %v", err)
	}
	if got, want := string(out), "plain|it's $HOME `x`||two\nlines|a=b"; got != want {
		t.Errorf("sourced %q, want %q", got, want)
	}

	modes := []struct {
		path string
		want os.FileMode
	}{
		{configFile, 0o644},
		// It holds the password of the httpreq API.
		{envFile, 0o600},
	}
	for _, m := range modes {
		info, err := os.Stat(m.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode(); got != m.want {
			t.Errorf("%s has mode %v, want %v", filepath.Base(m.path), got, m.want)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got, want := strings.Join(names, " "), EnvFileName+" "+StaticFileName; got != want {
		t.Errorf("state folder holds %s, want %s: stale temporary files are removed", got, want)
	}
}

func TestWriteStateCreatesFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b", StateDirName)
	if _, err := WriteState(dir, []byte("x: 1\n"), nil); err != nil {
		t.Fatalf("WriteState: %v", err)
	}
	info, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); !info.IsDir() || perm != 0o755 {
		t.Errorf("state folder mode %v, want a 0755 folder", info.Mode())
	}
	// No environment: an empty file, which sh sources as well.
	if b, err := os.ReadFile(filepath.Join(dir, EnvFileName)); err != nil || len(b) != 0 {
		t.Errorf("environment file %q, %v; want it empty", b, err)
	}
}

func TestWriteStateRejectsEnv(t *testing.T) {
	const secret = "s3cr3t"
	tests := []struct {
		name string
		kv   string
	}{
		{"no equal sign", "HTTPREQ_PASSWORD" + secret},
		{"empty key", "=" + secret},
		// After "export" a shell would run anything that is not a name.
		{"command in the key", "A;touch /tmp/x=" + secret},
		{"space in the key", "A B=" + secret},
		{"key starting with a digit", "1A=" + secret},
		{"NUL in the value", "HTTPREQ_PASSWORD=" + secret + "\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), StateDirName)
			_, err := WriteState(dir, []byte("x: 1\n"), []string{"A=1", tt.kv})
			if err == nil {
				t.Fatalf("WriteState accepted %q", tt.kv)
			}
			// The value may be the password of the httpreq API.
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q shows the value", err)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("state folder written although the environment was refused: %v", err)
			}
		})
	}
}

// parseEnvFile reads the environment file back the way sh reads it: inside
// single quotes nothing is special, and a quote is written by closing them,
// a backslash and the quote, and opening them again.
func parseEnvFile(t testing.TB, b string) []string {
	t.Helper()
	var env []string
	for b != "" {
		rest, ok := strings.CutPrefix(b, "export ")
		if !ok {
			t.Fatalf("entry does not start with export: %q", b)
		}
		k, rest, ok := strings.Cut(rest, "='")
		if !ok || !shellName(k) {
			t.Fatalf("no shell name before =': %q", rest)
		}
		var v strings.Builder
		for {
			i := strings.IndexByte(rest, '\'')
			if i < 0 {
				t.Fatalf("unterminated quote: %q", rest)
			}
			v.WriteString(rest[:i])
			rest = rest[i+1:]
			if r, ok := strings.CutPrefix(rest, `\''`); ok {
				v.WriteByte('\'')
				rest = r
				continue
			}
			r, ok := strings.CutPrefix(rest, "\n")
			if !ok {
				t.Fatalf("text after the closing quote: %q", rest)
			}
			rest = r
			break
		}
		env = append(env, k+"="+v.String())
		b = rest
	}
	return env
}

func FuzzRenderEnvFile(f *testing.F) {
	f.Add("HTTPREQ_PASSWORD", "it's")
	f.Add("A", `'\''`)
	f.Add("_", "'\n'")
	f.Add("A;id", "x")
	f.Add("", "")
	f.Add("A", "\x00")
	f.Fuzz(func(t *testing.T, k, v string) {
		kv := k + "=" + v
		out, err := renderEnvFile([]string{kv, "B=2"})
		if err != nil {
			if shellName(k) && !strings.ContainsRune(v, 0) {
				t.Fatalf("refused %q: %v", kv, err)
			}
			return
		}
		got := parseEnvFile(t, string(out))
		if len(got) != 2 || got[0] != kv || got[1] != "B=2" {
			t.Fatalf("%q reads back as %q", kv, got)
		}
	})
}
