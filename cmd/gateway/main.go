// Command gateway serves the gateway object on zbus and keeps the Traefik
// that carries the node's web traffic running. It only wires the parts of
// pkg/ together.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	zlog "github.com/rs/zerolog/log"
	"github.com/threefoldtech/zbus"
	"github.com/traefik/paerser/cli"

	"github.com/threefoldtech/gateway/pkg/acmedns"
	"github.com/threefoldtech/gateway/pkg/gateway"
	"github.com/threefoldtech/gateway/pkg/traefik"
)

func main() {
	if err := cli.Execute(newCommand(run)); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

// newCommand builds the command line: a configuration file, else flags,
// else GATEWAY_* environment variables fill the configuration, as in Traefik.
func newCommand(run func(*Configuration) error) *cli.Command {
	cfg := defaultConfiguration()
	files := &cli.FileLoader{ConfigFileFlag: "configfile", BasePaths: []string{"/etc/gateway/gateway"}}
	return &cli.Command{
		Name:          "gateway",
		Description:   "Publishes web backends of a node through Traefik, on request of other modules over zbus.",
		Configuration: cfg,
		Resources:     []cli.ResourceLoader{files, &cli.FlagLoader{}, &cli.EnvLoader{Prefix: "GATEWAY_"}},
		Run: func([]string) error {
			if cfg.ConfigFile != "" && files.GetFilename() == "" {
				return fmt.Errorf("--configfile %q: no such file", cfg.ConfigFile)
			}
			return run(cfg)
		},
	}
}

func run(cfg *Configuration) error {
	s, err := cfg.check()
	if err != nil {
		return err
	}
	level, err := zerolog.ParseLevel(cfg.Log.Level)
	if err != nil || cfg.Log.Level == "" {
		return fmt.Errorf("--log.level %q: expected debug, info, warn or error", cfg.Log.Level)
	}
	log := zerolog.New(os.Stderr).Level(level).With().Timestamp().Logger()
	// zbus logs through zerolog's global logger.
	zlog.Logger = log.With().Str("component", "zbus").Logger()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return fmt.Errorf("--root %q: %w", cfg.Root, err)
	}
	stateDir := filepath.Join(root, "traefik")
	state, err := traefik.OpenDir(stateDir)
	if err != nil {
		return err
	}
	if cfg.Resolver == "" {
		if cfg.Resolver, err = gateway.SystemResolverAddress(); err != nil {
			return fmt.Errorf("--resolver not set and %w", err)
		}
	}

	var tasks []task
	var traefikEnv, dnsResolvers []string
	if cfg.Public.Domain != "" {
		acme, err := newACMEDNS(cfg, stateDir, log)
		if err != nil {
			return err
		}
		tasks = append(tasks, acme.tasks...)
		traefikEnv = acme.env
		dnsResolvers = []string{localAddress(cfg.DNS.Address)}
		tasks = append(tasks, task{"delegation check", func(ctx context.Context) error {
			checkDelegation(ctx, cfg.Resolver, cfg.Public.Domain, s.publicIPs, log)
			return nil
		}})
	}

	caFiles := make([]string, len(cfg.ACME.CACertificates))
	for i, f := range cfg.ACME.CACertificates {
		if caFiles[i], err = filepath.Abs(f); err != nil {
			return fmt.Errorf("--acme.cacertificates %q: %w", f, err)
		}
	}
	static, err := traefik.RenderStatic(traefik.StaticOptions{
		ProxyDir:           filepath.Join(root, "proxy"),
		StateDir:           stateDir,
		WebAddress:         cfg.Traefik.Web,
		WebSecureAddress:   cfg.Traefik.WebSecure,
		MetricsAddress:     cfg.Traefik.Metrics,
		Throttle:           time.Duration(cfg.Traefik.Throttle),
		ACMEEmail:          cfg.ACME.Email,
		ACMECAServer:       cfg.ACME.CAServer,
		ACMECACertificates: caFiles,
		DNSResolvers:       dnsResolvers,
		LogLevel:           traefikLogLevel(level),
	})
	if err != nil {
		return fmt.Errorf("static configuration: %w", err)
	}
	if err := state.Write("traefik", static); err != nil {
		return fmt.Errorf("writing static configuration: %w", err)
	}
	// An outside supervisor (zinit/traefik.yaml) reads Traefik's environment
	// from this file.
	if err := writeEnvFile(filepath.Join(stateDir, "traefik.env"), traefikEnv); err != nil {
		return err
	}

	module, err := gateway.New(gateway.Config{
		Root:       root,
		Domain:     cfg.Public.Domain,
		PublicIPs:  s.publicIPs,
		Allow:      s.allow,
		Resolver:   gateway.DNSResolver{Server: cfg.Resolver},
		MetricsURL: "http://" + cfg.Traefik.Metrics + "/metrics",
		Logger:     log,
	})
	if err != nil {
		return err
	}

	if cfg.Traefik.Managed {
		proc, err := traefik.NewProcess(traefik.ProcessConfig{
			Binary:     cfg.Traefik.Binary,
			ConfigFile: state.File("traefik"),
			StateDir:   stateDir,
			Env:        traefikEnv,
			Logger:     log,
		})
		if err != nil {
			return err
		}
		tasks = append(tasks, task{"traefik", proc.Run})
	}
	tasks = append(tasks, task{"zbus", func(ctx context.Context) error {
		return serveBus(ctx, cfg.Broker, cfg.Workers, module, log)
	}})

	log.Info().Str("root", root).Str("broker", cfg.Broker).Str("domain", cfg.Public.Domain).Msg("gateway starting")
	err = runAll(ctx, tasks, log)
	log.Info().Msg("gateway stopped")
	return err
}

// serveBus registers the module on zbus and serves it. Redis may not be up
// yet when the node boots: it retries until ctx ends.
func serveBus(ctx context.Context, broker string, workers uint, module *gateway.Module, log zerolog.Logger) error {
	for {
		server, err := zbus.NewRedisServer(gateway.ModuleName, broker, workers)
		if err == nil {
			id := zbus.ObjectID{Name: gateway.ObjectName, Version: gateway.ObjectVersion}
			if err := server.Register(id, module); err != nil {
				return fmt.Errorf("registering %s on zbus: %w", id, err)
			}
			log.Info().Str("object", id.String()).Uint("workers", workers).Msg("serving on zbus")
			// zbus notices the end of ctx only between its blocking pulls
			// (up to 10 s each): do not hold the exit for that.
			done := make(chan error, 1)
			go func() { done <- server.Run(ctx) }()
			select {
			case err := <-done:
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		log.Error().Err(err).Str("broker", broker).Msg("connecting to the zbus broker; retrying in 1s")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// acmeDNS is the embedded DNS server of the _acme-challenge zone and the
// loopback API Traefik feeds it through.
type acmeDNS struct {
	tasks []task
	env   []string
}

func newACMEDNS(cfg *Configuration, stateDir string, log zerolog.Logger) (*acmeDNS, error) {
	store, err := acmedns.NewStore(acmedns.StoreConfig{})
	if err != nil {
		return nil, err
	}
	server, err := acmedns.New(acmedns.Config{Domain: cfg.Public.Domain, Address: cfg.DNS.Address, Store: store, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("--dns.address: %w", err)
	}
	// The credentials are kept so that a Traefik adopted after a gateway
	// restart, which was started with them, can still present challenges.
	user, pass, err := acmedns.LoadOrCreateCredentials(filepath.Join(stateDir, "httpreq.credentials"))
	if err != nil {
		return nil, err
	}
	handler, err := acmedns.NewHTTPReqHandler(acmedns.HTTPReqConfig{Domain: cfg.Public.Domain, Store: store, Username: user, Password: pass, Logger: log})
	if err != nil {
		return nil, err
	}
	api, err := acmedns.NewAPIServer(acmedns.APIConfig{Address: cfg.DNS.API, Handler: handler, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("--dns.api: %w", err)
	}
	return &acmeDNS{
		tasks: []task{{"dns server", server.Run}, {"httpreq api", api.Run}},
		env: []string{
			"HTTPREQ_ENDPOINT=http://" + cfg.DNS.API,
			"HTTPREQ_USERNAME=" + user,
			"HTTPREQ_PASSWORD=" + pass,
			"HTTPREQ_POLLING_INTERVAL=1",
			"HTTPREQ_PROPAGATION_TIMEOUT=60",
			// lego would otherwise follow CNAMEs through the host's resolvers.
			"LEGO_DISABLE_CNAME_SUPPORT=true",
		},
	}, nil
}

// checkDelegation warns when _acme-challenge.<domain> is not delegated to
// the node: the most common reason a name proxy serves an invalid
// certificate.
func checkDelegation(ctx context.Context, resolver, domain string, ips []netip.Addr, log zerolog.Logger) {
	nodeIPs := make([]net.IP, len(ips))
	for i, ip := range ips {
		nodeIPs[i] = ip.AsSlice()
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := acmedns.CheckDelegation(ctx, resolver, domain, nodeIPs)
	switch {
	case errors.Is(err, acmedns.ErrNotDelegated):
		log.Warn().Err(err).Str("resolver", resolver).Msg("the _acme-challenge zone is not delegated to this node: the wildcard certificate of name proxies cannot be issued (see docs/DNS.md)")
		return
	case err != nil:
		log.Warn().Err(err).Str("resolver", resolver).Msg("could not check the delegation of the _acme-challenge zone")
		return
	}
	log.Info().Str("domain", domain).Msg("_acme-challenge delegation points at this node")
}

// localAddress turns a listening address into one to send queries to.
func localAddress(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

func traefikLogLevel(l zerolog.Level) string {
	switch l {
	case zerolog.TraceLevel, zerolog.DebugLevel:
		return "DEBUG"
	case zerolog.WarnLevel:
		return "WARN"
	case zerolog.ErrorLevel, zerolog.FatalLevel, zerolog.PanicLevel:
		return "ERROR"
	}
	return "INFO"
}

// writeEnvFile writes KEY=value lines readable by a shell, mode 0600: it
// holds the httpreq password.
func writeEnvFile(path string, env []string) error {
	var b []byte
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		b = fmt.Appendf(b, "export %s='%s'\n", k, strings.ReplaceAll(v, "'", `'\''`))
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// task is a part of the daemon that runs until ctx ends.
type task struct {
	name string
	run  func(ctx context.Context) error
}

// runAll runs every task until ctx ends or one fails, then stops the rest
// and returns the first failure.
func runAll(ctx context.Context, tasks []task, log zerolog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(tasks))
	for _, t := range tasks {
		go func() {
			err := t.run(ctx)
			if err != nil && !errors.Is(err, context.Canceled) {
				err = fmt.Errorf("%s: %w", t.name, err)
				log.Error().Err(err).Msg("stopping")
				cancel()
			} else {
				err = nil
			}
			errs <- err
		}()
	}
	var first error
	for range tasks {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}
