package acmedns

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"github.com/threefoldtech/gateway/internal/quote"
)

// Limits on what lego's httpreq provider may send.
const (
	// maxBodyBytes bounds a request body; a real one is about 100 bytes.
	maxBodyBytes = 4 << 10
	// maxValueBytes bounds a challenge value; ACME values are 43 bytes.
	maxValueBytes = 512
)

// HTTPReqConfig configures an HTTPReqHandler.
type HTTPReqConfig struct {
	// Domain is the gateway domain, e.g. "gw.example"; only names in the
	// zone "_acme-challenge.<Domain>." are accepted. Required.
	Domain string
	// Store receives the presented values. Required; share it with the
	// Server that answers them.
	Store *Store
	// Username and Password are the basic auth credentials lego sends
	// (Traefik's HTTPREQ_USERNAME and HTTPREQ_PASSWORD). Both required; the
	// username must not contain a colon.
	Username string
	Password string
	// Logger receives one line per accepted or refused request.
	Logger zerolog.Logger
}

// HTTPReqHandler is the http.Handler behind lego's httpreq DNS provider
// (default mode): POST /present and POST /cleanup with the JSON body
// {"fqdn": "...", "value": "..."}, with basic auth. It answers 200 on
// success and a short text reason with 400, 401, 404, 405 or 413 otherwise.
type HTTPReqHandler struct {
	zone  string
	store *Store
	user  [sha256.Size]byte
	pass  [sha256.Size]byte
	log   zerolog.Logger
}

var _ http.Handler = (*HTTPReqHandler)(nil)

// httpreqBody is the JSON body lego's httpreq provider sends in its default
// mode.
type httpreqBody struct {
	FQDN  string `json:"fqdn"`
	Value string `json:"value"`
}

// NewHTTPReqHandler validates cfg and returns the handler.
func NewHTTPReqHandler(cfg HTTPReqConfig) (*HTTPReqHandler, error) {
	if err := checkDomain(cfg.Domain); err != nil {
		return nil, fmt.Errorf("validating httpreq config: %w", err)
	}
	if cfg.Store == nil {
		return nil, errors.New("validating httpreq config: store is required")
	}
	if cfg.Username == "" || cfg.Password == "" {
		return nil, errors.New("validating httpreq config: username and password are required")
	}
	if strings.Contains(cfg.Username, ":") {
		return nil, errors.New("validating httpreq config: username must not contain a colon")
	}
	return &HTTPReqHandler{
		zone:  ChallengeZone(cfg.Domain),
		store: cfg.Store,
		// Compare digests so that the comparison takes the same time
		// whatever the lengths.
		user: sha256.Sum256([]byte(cfg.Username)),
		pass: sha256.Sum256([]byte(cfg.Password)),
		log:  cfg.Logger.With().Str("component", "acmedns-httpreq").Logger(),
	}, nil
}

// ServeHTTP handles one present or cleanup request.
func (h *HTTPReqHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="acmedns", charset="UTF-8"`)
		h.fail(w, r, http.StatusUnauthorized, "unauthorized")
		return
	}
	present := r.URL.Path == "/present"
	if !present && r.URL.Path != "/cleanup" {
		h.fail(w, r, http.StatusNotFound, "not found: only /present and /cleanup")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.fail(w, r, http.StatusMethodNotAllowed, "method not allowed: only POST")
		return
	}
	body, err := decodeBody(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.fail(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", maxBodyBytes))
			return
		}
		h.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	fqdn, err := h.checkFQDN(body.FQDN)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if err := checkValue(body.Value); err != nil {
		h.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if present {
		if err := h.store.Present(fqdn, body.Value); err != nil {
			h.fail(w, r, http.StatusBadRequest, err.Error())
			return
		}
	} else {
		h.store.Cleanup(fqdn, body.Value)
	}
	h.log.Info().Str("path", r.URL.Path).Str("fqdn", fqdn).Str("value", body.Value).Msg("acme challenge value")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\n")
}

// authorized checks the basic auth credentials of r in constant time.
func (h *HTTPReqHandler) authorized(r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	u := sha256.Sum256([]byte(user))
	p := sha256.Sum256([]byte(pass))
	// Both comparisons always run, so that timing tells nothing of which
	// one failed.
	match := subtle.ConstantTimeCompare(u[:], h.user[:]) & subtle.ConstantTimeCompare(p[:], h.pass[:])
	return ok && match == 1
}

// fail answers with status and a one-line reason, and logs it.
func (h *HTTPReqHandler) fail(w http.ResponseWriter, r *http.Request, status int, reason string) {
	h.log.Warn().Str("method", r.Method).Str("path", quote.Short(r.URL.Path)).
		Str("remote", r.RemoteAddr).Int("status", status).Str("reason", reason).Msg("refused httpreq request")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, reason+"\n")
}

// decodeBody reads exactly one JSON object with known fields only.
func decodeBody(r io.Reader) (httpreqBody, error) {
	var b httpreqBody
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return b, err
		}
		return b, fmt.Errorf("decoding json body: %w", err)
	}
	// Anything after the object is an error too, including a body cut
	// short by the size limit.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return b, err
		}
		return b, errors.New("decoding json body: data after the object")
	}
	return b, nil
}

// checkFQDN canonicalises fqdn (lower case, trailing dot) and checks that it
// is a host name inside the challenge zone.
func (h *HTTPReqHandler) checkFQDN(fqdn string) (string, error) {
	if fqdn == "" {
		return "", errors.New(`field "fqdn" is missing or empty`)
	}
	if len(fqdn) > 254 {
		return "", fmt.Errorf(`field "fqdn" %s is too long`, quote.Short(fqdn))
	}
	name := CanonicalName(fqdn)
	if _, ok := dns.IsDomainName(name); !ok || strings.HasPrefix(name, ".") {
		return "", fmt.Errorf(`field "fqdn" %s is not a domain name`, quote.Short(fqdn))
	}
	// Backslashes would be escapes in presentation form, which no ACME
	// name needs.
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c > '~' || c == '\\' || c == '"' {
			return "", fmt.Errorf(`field "fqdn" %s holds a forbidden character`, quote.Short(fqdn))
		}
	}
	if !isBelowOrAt(name, h.zone) {
		return "", fmt.Errorf(`field "fqdn" %s is outside the zone %q`, quote.Short(fqdn), h.zone)
	}
	return name, nil
}

// checkValue checks a challenge value: 1 to 512 bytes of visible ASCII
// without quotes or backslashes (ACME values are base64url).
func checkValue(v string) error {
	if v == "" {
		return errors.New(`field "value" is missing or empty`)
	}
	if len(v) > maxValueBytes {
		return fmt.Errorf(`field "value" is longer than %d bytes`, maxValueBytes)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c > '~' || c == '"' || c == '\\' {
			return fmt.Errorf(`field "value" holds the forbidden byte 0x%02x at offset %d`, c, i)
		}
	}
	return nil
}
