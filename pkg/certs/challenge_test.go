package certs

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestHandler(t *testing.T) {
	m := newTestManager(t, "", Config{}, nil)
	h := m.Handler()
	m.challenges.Present("app.example.test", "tok123", "tok123.thumb")
	m.challenges.Present("other.example.test", "tok456", "tok456.thumb")
	tests := []struct {
		name, method, host, path string
		want                     int
	}{
		{"answers the challenge's domain", "GET", "app.example.test", "/.well-known/acme-challenge/tok123", 200},
		{"port stripped", "GET", "app.example.test:80", "/.well-known/acme-challenge/tok123", 200},
		{"case does not matter", "GET", "App.Example.TEST", "/.well-known/acme-challenge/tok123", 200},
		{"HEAD too", "HEAD", "app.example.test", "/.well-known/acme-challenge/tok123", 200},
		// One tenant's domain must not answer another's token.
		{"token of another domain", "GET", "other.example.test", "/.well-known/acme-challenge/tok123", 404},
		{"no host", "GET", "", "/.well-known/acme-challenge/tok123", 404},
		{"unknown token", "GET", "app.example.test", "/.well-known/acme-challenge/nope", 404},
		{"empty token", "GET", "app.example.test", "/.well-known/acme-challenge/", 404},
		{"other path", "GET", "app.example.test", "/tok123", 404},
		{"POST", "POST", "app.example.test", "/.well-known/acme-challenge/tok123", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "http://x"+tt.path, nil)
			r.Host = tt.host
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d", w.Code, tt.want)
			}
			if tt.want == http.StatusOK {
				if ct := w.Header().Get("Content-Type"); ct != "text/plain" {
					t.Errorf("Content-Type %q", ct)
				}
				body, _ := io.ReadAll(w.Body)
				if tt.method == "GET" && string(body) != "tok123.thumb" {
					t.Errorf("body %q", body)
				}
			}
		})
	}

	// A cleaned-up challenge is no longer answered.
	m.challenges.CleanUp("app.example.test", "tok123", "tok123.thumb")
	r := httptest.NewRequest("GET", "http://app.example.test/.well-known/acme-challenge/tok123", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusNotFound {
		t.Errorf("after CleanUp: status %d, want 404", w.Code)
	}
}
