package acmedns

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

const (
	testUser = "acme-0123456789ab"
	testPass = "s3cret-password"
)

func newTestHTTPReq(tb testing.TB, store *Store) *HTTPReqHandler {
	tb.Helper()
	h, err := NewHTTPReqHandler(HTTPReqConfig{
		Domain: testDomain, Store: store, Username: testUser, Password: testPass, Logger: zerolog.Nop(),
	})
	if err != nil {
		tb.Fatalf("NewHTTPReqHandler: %v", err)
	}
	return h
}

// body returns a JSON body as lego's httpreq provider sends it.
func body(fqdn, value string) string {
	return `{"fqdn":"` + fqdn + `","value":"` + value + `"}`
}

func TestHTTPReqHandler(t *testing.T) {
	// Refused requests leave the store as it was.
	unchanged := []string{acmeValue2}
	tests := []struct {
		name       string
		method     string // POST when empty
		path       string
		body       string
		user, pass string // testUser/testPass when both empty; "-" for no auth
		wantStatus int
		wantBody   string   // substring of the answer
		at         string   // where to look afterwards; testZone when empty
		wantValues []string // values there afterwards; before holds acmeValue2 at testZone
	}{
		{
			name: "present adds the value", path: "/present", body: body(testZone, acmeValue),
			wantStatus: http.StatusOK, wantValues: []string{acmeValue2, acmeValue},
		},
		{
			// lego always sends the dot, but a hand-made request may not.
			name: "fqdn without trailing dot and in upper case is canonicalised", path: "/present",
			body:       body("_ACME-CHALLENGE.GW.EXAMPLE", acmeValue),
			wantStatus: http.StatusOK, wantValues: []string{acmeValue2, acmeValue},
		},
		{
			name: "cleanup removes the value", path: "/cleanup", body: body(testZone, acmeValue2),
			wantStatus: http.StatusOK, wantValues: nil,
		},
		{
			name: "missing auth is 401", path: "/present", body: body(testZone, acmeValue), user: "-",
			wantStatus: http.StatusUnauthorized, wantBody: "unauthorized", wantValues: unchanged,
		},
		{
			name: "wrong password is 401", path: "/present", body: body(testZone, acmeValue), user: testUser, pass: "wrong",
			wantStatus: http.StatusUnauthorized, wantValues: unchanged,
		},
		{
			name: "wrong username is 401", path: "/present", body: body(testZone, acmeValue), user: "admin", pass: testPass,
			wantStatus: http.StatusUnauthorized, wantValues: unchanged,
		},
		{
			name: "GET is 405", method: http.MethodGet, path: "/present",
			wantStatus: http.StatusMethodNotAllowed, wantBody: "only POST", wantValues: unchanged,
		},
		{
			name: "unknown path is 404", path: "/presents", body: body(testZone, acmeValue),
			wantStatus: http.StatusNotFound, wantValues: unchanged,
		},
		{
			// The endpoint is the root; sub paths are not ours.
			name: "nested path is 404", path: "/x/present", body: body(testZone, acmeValue),
			wantStatus: http.StatusNotFound, wantValues: unchanged,
		},
		{
			name: "fqdn outside the zone is 400", path: "/present", body: body("_acme-challenge.other.example.", acmeValue),
			wantStatus: http.StatusBadRequest, wantBody: "outside the zone", wantValues: unchanged,
		},
		{
			name: "the gateway domain itself is outside the zone", path: "/present", body: body("gw.example.", acmeValue),
			wantStatus: http.StatusBadRequest, wantBody: "outside the zone", wantValues: unchanged,
		},
		{
			name: "fqdn that only ends like the zone is outside", path: "/present", body: body("x_acme-challenge.gw.example.", acmeValue),
			wantStatus: http.StatusBadRequest, wantBody: "outside the zone", wantValues: unchanged,
		},
		{
			name: "name below the zone is accepted", path: "/present", body: body("sub."+testZone, acmeValue),
			wantStatus: http.StatusOK, at: "sub." + testZone, wantValues: []string{acmeValue},
		},
		{
			name: "fqdn with an escape is 400", path: "/present", body: body(`x\\.`+testZone, acmeValue),
			wantStatus: http.StatusBadRequest, wantBody: "forbidden character", wantValues: unchanged,
		},
		{
			name: "empty fqdn is 400", path: "/present", body: body("", acmeValue),
			wantStatus: http.StatusBadRequest, wantBody: "fqdn", wantValues: unchanged,
		},
		{
			name: "empty value is 400", path: "/present", body: body(testZone, ""),
			wantStatus: http.StatusBadRequest, wantBody: "value", wantValues: unchanged,
		},
		{
			name: "value with a quote is 400", path: "/present", body: body(testZone, `a\"b`),
			wantStatus: http.StatusBadRequest, wantBody: "forbidden byte", wantValues: unchanged,
		},
		{
			name: "value with a space is 400", path: "/present", body: body(testZone, "a b"),
			wantStatus: http.StatusBadRequest, wantBody: "forbidden byte", wantValues: unchanged,
		},
		{
			name: "value longer than 512 bytes is 400", path: "/present", body: body(testZone, strings.Repeat("a", 513)),
			wantStatus: http.StatusBadRequest, wantBody: "longer than 512", wantValues: unchanged,
		},
		{
			name: "bad JSON is 400", path: "/present", body: `{"fqdn":`,
			wantStatus: http.StatusBadRequest, wantBody: "decoding json", wantValues: unchanged,
		},
		{
			name: "unknown field is 400", path: "/present", body: `{"fqdn":"` + testZone + `","value":"x","ttl":5}`,
			wantStatus: http.StatusBadRequest, wantBody: "unknown field", wantValues: unchanged,
		},
		{
			// lego's RAW mode sends other fields; we only speak the default.
			name: "RAW mode body is 400", path: "/present", body: `{"domain":"gw.example","token":"t","keyAuth":"k"}`,
			wantStatus: http.StatusBadRequest, wantBody: "unknown field", wantValues: unchanged,
		},
		{
			name: "two objects are 400", path: "/present", body: body(testZone, acmeValue) + body(testZone, acmeValue),
			wantStatus: http.StatusBadRequest, wantBody: "after the object", wantValues: unchanged,
		},
		{
			name: "oversized body is 413", path: "/present", body: `{"fqdn":"` + testZone + `","value":"` + strings.Repeat("a", 5000) + `"}`,
			wantStatus: http.StatusRequestEntityTooLarge, wantValues: unchanged,
		},
		{
			name: "oversized trailing whitespace is 413", path: "/present", body: body(testZone, acmeValue) + strings.Repeat(" ", 5000),
			wantStatus: http.StatusRequestEntityTooLarge, wantValues: unchanged,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := newTestStore(t, nil)
			// acmeValue2 is there before each case, to see what cleanup
			// and failures leave.
			if err := store.Present(testZone, acmeValue2); err != nil {
				t.Fatal(err)
			}
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			req := httptest.NewRequest(method, tt.path, strings.NewReader(tt.body))
			req.Header.Set("Content-Type", "application/json")
			switch {
			case tt.user == "-":
			case tt.user == "" && tt.pass == "":
				req.SetBasicAuth(testUser, testPass)
			default:
				req.SetBasicAuth(tt.user, tt.pass)
			}
			rec := httptest.NewRecorder()
			newTestHTTPReq(t, store).ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Errorf("status %d (%q), want %d", rec.Code, rec.Body.String(), tt.wantStatus)
			}
			if !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("body %q, want it to contain %q", rec.Body.String(), tt.wantBody)
			}
			at := tt.at
			if at == "" {
				at = testZone
			}
			if got := values(store, at); !slices.Equal(got, tt.wantValues) {
				t.Errorf("values at %q: %q, want %q", at, got, tt.wantValues)
			}
		})
	}
}

func TestNewHTTPReqHandlerValidates(t *testing.T) {
	store := newTestStore(t, nil)
	tests := []struct {
		name string
		cfg  HTTPReqConfig
	}{
		{name: "missing username", cfg: HTTPReqConfig{Domain: testDomain, Store: store, Password: "p"}},
		{name: "missing password", cfg: HTTPReqConfig{Domain: testDomain, Store: store, Username: "u"}},
		{name: "colon in username", cfg: HTTPReqConfig{Domain: testDomain, Store: store, Username: "u:x", Password: "p"}},
		{name: "missing store", cfg: HTTPReqConfig{Domain: testDomain, Username: "u", Password: "p"}},
		{name: "bad domain", cfg: HTTPReqConfig{Domain: "x", Store: store, Username: "u", Password: "p"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewHTTPReqHandler(tt.cfg); err == nil {
				t.Error("NewHTTPReqHandler succeeded")
			}
		})
	}
}

// TestHTTPReqEndToEnd plays lego: present two values over HTTP, see both in
// DNS, clean one up, see the other alone.
func TestHTTPReqEndToEnd(t *testing.T) {
	store := newTestStore(t, nil)
	dnsSrv := startServer(t, store)
	api := startAPIServer(t, newTestHTTPReq(t, store))
	client := &http.Client{Timeout: waitTimeout}
	post := func(path, value string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, "http://"+api.Addr()+path, bytes.NewBufferString(body(testZone, value)))
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(testUser, testPass)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: status %d", path, resp.StatusCode)
		}
	}
	txt := func() []string {
		t.Helper()
		return txtValues(exchange(t, "udp", dnsSrv.Addr(), question(testZone, dns.TypeTXT)).Answer)
	}

	post("/present", acmeValue)
	post("/present", acmeValue2)
	if got := txt(); !slices.Equal(got, []string{acmeValue, acmeValue2}) {
		t.Fatalf("TXT after two presents %q, want both values", got)
	}
	post("/cleanup", acmeValue)
	if got := txt(); !slices.Equal(got, []string{acmeValue2}) {
		t.Fatalf("TXT after cleanup %q, want %q", got, acmeValue2)
	}
	post("/cleanup", acmeValue2)
	if got := txt(); len(got) != 0 {
		t.Fatalf("TXT after both cleanups %q, want none", got)
	}
}
