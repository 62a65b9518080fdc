package certs

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/go-acme/lego/v4/acme"
	"github.com/go-acme/lego/v4/certcrypto"
	"github.com/go-acme/lego/v4/certificate"
	"github.com/go-acme/lego/v4/lego"
	legolog "github.com/go-acme/lego/v4/log"
	"github.com/go-acme/lego/v4/registration"
	"github.com/rs/zerolog"
)

// userAgent names the gateway to the ACME server.
const userAgent = "threefoldtech-gateway"

// errAccountDoesNotExist is the ACME problem of an account the server
// forgot (a test CA restarted, an account deactivated).
const errAccountDoesNotExist = "urn:ietf:params:acme:error:accountDoesNotExist"

// account is the ACME account, as lego's registration.User.
type account struct {
	email string
	reg   *registration.Resource
	key   crypto.PrivateKey
}

var _ registration.User = (*account)(nil)

func (a *account) GetEmail() string                        { return a.email }
func (a *account) GetRegistration() *registration.Resource { return a.reg }
func (a *account) GetPrivateKey() crypto.PrivateKey        { return a.key }

// acmeClient obtains certificates with lego. It is used by Run alone.
type acmeClient struct {
	store      *store
	caServer   string
	httpClient *http.Client
	challenges *challenges
	account    *account
	client     *lego.Client // nil until the first order, and after an error
}

// obtain orders a certificate for domain and returns its chain and key,
// PEM. The HTTP requests of the order end when ctx does; lego's waits
// between polls do not, which bounds a shutdown by a few seconds.
func (c *acmeClient) obtain(ctx context.Context, domain string) (certPEM, keyPEM []byte, err error) {
	client, err := c.legoClient(ctx)
	if err != nil {
		return nil, nil, err
	}
	res, err := client.Certificate.Obtain(certificate.ObtainRequest{Domains: []string{domain}, Bundle: true})
	if err != nil {
		var problem *acme.ProblemDetails
		if errors.As(err, &problem) && problem.Type == errAccountDoesNotExist {
			// Register again at the next order.
			c.account.reg = nil
			c.client = nil
			if serr := c.store.saveRegistration(nil); serr != nil {
				err = fmt.Errorf("%w (and %w)", err, serr)
			}
		}
		return nil, nil, asRateLimited(domainError(err))
	}
	return res.Certificate, res.PrivateKey, nil
}

// legoClient returns the lego client, made on first need: it fetches the
// ACME directory, and registers the account when it has no registration.
func (c *acmeClient) legoClient(ctx context.Context) (*lego.Client, error) {
	if c.client != nil {
		return c.client, nil
	}
	cfg := lego.NewConfig(c.account)
	cfg.CADirURL = c.caServer
	cfg.UserAgent = userAgent
	cfg.HTTPClient = withContext(ctx, c.httpClient)
	cfg.Certificate.KeyType = certcrypto.EC256
	client, err := lego.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to the ACME server: %w", err)
	}
	if err := client.Challenge.SetHTTP01Provider(c.challenges); err != nil {
		return nil, fmt.Errorf("setting the HTTP-01 provider: %w", err)
	}
	if c.account.reg == nil {
		reg, err := client.Registration.Register(registration.RegisterOptions{TermsOfServiceAgreed: true})
		if err != nil {
			return nil, fmt.Errorf("registering the ACME account: %w", err)
		}
		if err := c.store.saveRegistration(reg); err != nil {
			return nil, err
		}
		c.account.reg = reg
	}
	c.client = client
	return client, nil
}

// withContext returns a copy of client whose requests end when ctx does.
func withContext(ctx context.Context, client *http.Client) *http.Client {
	c := *client
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = ctxTransport{ctx: ctx, base: base}
	return &c
}

// ctxTransport sends every request with a context that ends with ctx.
type ctxTransport struct {
	ctx  context.Context
	base http.RoundTripper
}

func (t ctxTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(t.ctx, cancel)
	resp, err := t.base.RoundTrip(r.WithContext(ctx))
	if err != nil {
		stop()
		cancel()
		return nil, err
	}
	// The body is read after RoundTrip returns: the context must outlive
	// it until it is closed.
	resp.Body = &cancelBody{ReadCloser: resp.Body, done: func() { stop(); cancel() }}
	return resp, nil
}

// cancelBody calls done when closed.
type cancelBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.done)
	return err
}

// legoLogOnce guards lego's logger, which is global to the process.
var legoLogOnce sync.Once

// routeLegoLog sends lego's log, which goes to stderr by default, to log
// at debug level. lego has one logger per process: the first Manager's
// logger gets it.
func routeLegoLog(log zerolog.Logger) {
	legoLogOnce.Do(func() {
		legolog.Logger = legoLogger{log: log.With().Str("component", "certs").Str("source", "lego").Logger()}
	})
}

// legoLogger is lego's log.StdLogger over zerolog.
type legoLogger struct {
	log zerolog.Logger
}

func (l legoLogger) Print(args ...any) { l.log.Debug().Msg(strings.TrimSpace(fmt.Sprint(args...))) }
func (l legoLogger) Println(args ...any) {
	l.log.Debug().Msg(strings.TrimSpace(fmt.Sprintln(args...)))
}
func (l legoLogger) Printf(format string, args ...any) {
	l.log.Debug().Msg(strings.TrimSpace(fmt.Sprintf(format, args...)))
}
func (l legoLogger) Fatal(args ...any) { l.log.Fatal().Msg(fmt.Sprint(args...)) }
func (l legoLogger) Fatalln(args ...any) {
	l.log.Fatal().Msg(strings.TrimSpace(fmt.Sprintln(args...)))
}
func (l legoLogger) Fatalf(format string, args ...any) { l.log.Fatal().Msgf(format, args...) }

// domainError returns the one error inside lego's per-domain error of a
// one-domain order ("error: one or more domains had a problem: [domain]
// …"), which says the same in fewer words; err itself otherwise.
func domainError(err error) error {
	if multi, ok := err.(interface{ Unwrap() []error }); ok {
		if errs := multi.Unwrap(); len(errs) == 1 && errs[0] != nil {
			return errs[0]
		}
	}
	return err
}
