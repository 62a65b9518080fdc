// Command gateway serves the gateway object on zbus and keeps the Traefik
// that carries the node's web traffic running. It only wires the parts of
// pkg/ together.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
	zlog "github.com/rs/zerolog/log"
	"github.com/threefoldtech/zbus"
	"github.com/traefik/paerser/cli"

	"github.com/threefoldtech/gateway/internal/tasks"
	"github.com/threefoldtech/gateway/pkg/acmedns"
	"github.com/threefoldtech/gateway/pkg/certs"
	"github.com/threefoldtech/gateway/pkg/gateway"
	"github.com/threefoldtech/gateway/pkg/meter"
	"github.com/threefoldtech/gateway/pkg/privnet"
	"github.com/threefoldtech/gateway/pkg/store"
	"github.com/threefoldtech/gateway/pkg/traefik"
	"github.com/threefoldtech/gateway/pkg/zosnet"
)

// probeTimeout bounds one question to Traefik's API.
const probeTimeout = 2 * time.Second

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

// run runs the gateway until a signal ends it, and starts it again in the
// same process when the node's public configuration changed.
func run(cfg *Configuration) error {
	err := serve(cfg)
	if errors.Is(err, errPublicChanged) {
		return restartSelf()
	}
	return err
}

// serve runs the gateway's parts until ctx ends or the node's public
// configuration changed (errPublicChanged).
func serve(cfg *Configuration) error {
	s, err := cfg.check()
	if err != nil {
		return err
	}
	level := cfg.LogLevel()
	log := zerolog.New(os.Stderr).Level(level).With().Timestamp().Logger()
	// zbus logs through zerolog's global logger.
	zlog.Logger = log.With().Str("component", "zbus").Logger()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, restart := context.WithCancelCause(ctx)
	defer restart(nil)

	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return fmt.Errorf("--root %q: %w", cfg.Root, err)
	}
	// The store first: a second gateway on this root stops here, before
	// it touches anything, even the network daemon.
	db, err := store.Open(filepath.Join(root, store.FileName))
	if err != nil {
		return err
	}
	defer db.Close()
	if aside, why := db.SetAside(); aside != "" {
		log.Error().Err(why).Str("set_aside", aside).Msg("the store could not be opened: it is set aside and a new one made; the routes are imported again from proxy/, the metering totals start again from zero (what was not yet reported by Metrics is lost), the schedules of certificate orders are rebuilt")
	}

	// On a zos node the domain and public IPs are the network daemon's,
	// unless a flag gives them.
	var parts []tasks.Task
	fromNetwork := cfg.Public.FromNetwork()
	if fromNetwork {
		public, follow, err := publicFromNetwork(ctx, cfg, restart, log)
		if err != nil {
			if ctx.Err() != nil {
				// Stopped while it waited for the network daemon.
				return nil
			}
			return err
		}
		s.publicIPs = public.Addrs()
		parts = append(parts, follow)
	}

	stateDir := filepath.Join(root, traefik.StateDirName)
	resolver, err := cfg.ResolverServer()
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metricsServer, err := gateway.NewMetricsServer(cfg.Metrics.Address, reg, log)
	if err != nil {
		return fmt.Errorf("--metrics.address: %w", err)
	}
	parts = append(parts, tasks.Task{Name: "metrics", Run: metricsServer.Run})
	var traefikEnv, dnsResolvers []string
	if cfg.Public.Domain != "" {
		acme, err := acmedns.NewService(acmedns.ServiceConfig{
			Domain:          cfg.Public.Domain,
			Address:         cfg.DNS.Address,
			APIAddress:      cfg.DNS.API,
			CredentialsFile: filepath.Join(stateDir, acmedns.CredentialsFileName),
			Resolver:        resolver,
			NodeIPs:         s.publicIPs,
			Registry:        reg,
			Logger:          log,
		})
		if err != nil {
			return fmt.Errorf("--public.domain, --dns.address, --dns.api: %w", err)
		}
		parts = append(parts, tasks.Task{Name: "acme dns", Run: acme.Run})
		traefikEnv = acme.Env()
		dnsResolvers = acme.Resolvers()
	}

	routes, err := traefik.OpenRoutes(root)
	if err != nil {
		return err
	}
	caFiles, err := cfg.ACME.CAFiles()
	if err != nil {
		return err
	}
	static, err := traefik.RenderStatic(traefik.StaticOptions{
		ProxyDir:           routes.Path(),
		StateDir:           stateDir,
		WebAddress:         cfg.Traefik.Web,
		WebSecureAddress:   cfg.Traefik.WebSecure,
		MetricsAddress:     cfg.Traefik.Metrics,
		Throttle:           time.Duration(cfg.Traefik.Throttle),
		ReadTimeout:        new(time.Duration(cfg.Traefik.ReadTimeout)),
		HandoverDrain:      time.Duration(cfg.Traefik.HandoverDrain),
		ACMEEmail:          cfg.ACME.Email,
		ACMECAServer:       cfg.ACME.CAServer,
		ACMECACertificates: caFiles,
		DNSResolvers:       dnsResolvers,
		LogLevel:           traefik.LogLevel(level),
		Debug:              cfg.Traefik.Debug,
	})
	if err != nil {
		return fmt.Errorf("static configuration: %w", err)
	}
	configFile, err := traefik.WriteState(stateDir, static, traefikEnv)
	if err != nil {
		return err
	}

	// Certificates of user domains: the gateway orders them (HTTP-01,
	// answered on the metrics server, where Traefik forwards challenges)
	// and hands them to Traefik through the reserved file.
	var module atomic.Pointer[gateway.Module]
	certManager, err := certs.New(certs.Config{
		Dir:            filepath.Join(root, certs.DirName),
		Store:          db,
		CAServer:       cfg.ACME.CAServer,
		CACertificates: caFiles,
		Email:          cfg.ACME.Email,
		BackoffMin:     time.Duration(cfg.ACME.BackoffMin),
		BackoffMax:     time.Duration(cfg.ACME.BackoffMax),
		KeepRetired:    time.Duration(cfg.ACME.KeepRetired),
		OrderLimit:     cfg.ACME.OrderLimit,
		OrderWindow:    time.Duration(cfg.ACME.OrderWindow),
		Logger:         log,
		Registry:       reg,
		OnChange: func() {
			if m := module.Load(); m != nil {
				m.CertificatesChanged()
			}
		},
	})
	if err != nil {
		return fmt.Errorf("--acme.*: %w", err)
	}
	importLegacyCertificates(stateDir, certManager, log)
	metricsServer.Handle(certs.ChallengePath, certManager.Handler())
	parts = append(parts, tasks.Task{Name: "certificates", Run: certManager.Run})

	// A node without nftables still routes; Metrics then says why it
	// cannot count.
	var routeMeter gateway.Meter
	bytesMeter, meterErr := meter.New(meter.Config{
		Table:    cfg.Metering.Table,
		Store:    db,
		Ledger:   filepath.Join(root, meter.LedgerDirName, meter.LedgerFileName),
		Interval: time.Duration(cfg.Metering.Interval),
		Logger:   log,
	})
	if meterErr != nil {
		log.Error().Err(meterErr).Msg("metering is unavailable: traffic is routed but not counted, and Metrics fails until it is fixed (docs/OPERATIONS.md, Metering)")
	} else {
		routeMeter = bytesMeter
		parts = append(parts, tasks.Task{Name: "metering", Run: bytesMeter.Run})
	}

	// Routes into tenants' private networks, through zos's network daemon
	// (docs/OPERATIONS.md, Private networks). A node without the daemon
	// refuses them, naming the network, when a call does not answer.
	var networks gateway.Networks
	if client, err := zbus.NewRedisClient(cfg.Broker); err != nil {
		log.Error().Err(err).Msg("private networks are unavailable: routes with a network are refused")
	} else if nets, err := privnet.New(privnet.Config{Daemon: zosnet.NewNetworker(client, zosnet.DefaultCallTimeout), Store: db, Logger: log}); err != nil {
		log.Error().Err(err).Msg("private networks are unavailable: routes with a network are refused")
	} else {
		defer nets.Close()
		networks = nets
	}

	mod, err := gateway.New(gateway.Config{
		Store:            db,
		Routes:           routes,
		Domain:           cfg.Public.Domain,
		PublicIPs:        s.publicIPs,
		Allow:            s.allow,
		Resolver:         gateway.DNSResolver{Server: resolver},
		Workers:          cfg.Workers,
		SweepInterval:    time.Duration(cfg.Routes.Sweep),
		StatusInterval:   time.Duration(cfg.Routes.Status),
		Networks:         networks,
		Meter:            routeMeter,
		MeterUnavailable: meterErr,
		Probe:            traefik.API{Base: traefik.APIURL(cfg.Traefik.Metrics), Client: &http.Client{Timeout: probeTimeout}},
		Status:           traefik.Observer{API: traefik.API{Base: traefik.APIURL(cfg.Traefik.Metrics)}, StateDir: stateDir},
		// Without one Traefik makes a new RSA certificate at every reload.
		DefaultCertificate: traefik.NewDefaultCertificate(stateDir, cfg.Public.Domain),
		Certificates:       certManager,
		CertificateFiles:   traefik.CertificateFiles{Dir: filepath.Join(stateDir, traefik.CertificatesDirName)},
		ChallengeURL:       "http://" + cfg.Metrics.Address,
		Registry:           reg,
		Logger:             log,
	})
	if err != nil {
		return err
	}
	if err := mod.Recover(); err != nil {
		return err
	}
	module.Store(mod)
	// Certificates that changed while the module started are in what it
	// published; one more look costs nothing.
	mod.CertificatesChanged()
	parts = append(parts, tasks.Task{Name: "route sweep", Run: mod.Run})

	if cfg.Traefik.Managed {
		proc, err := traefik.NewProcess(traefik.ProcessConfig{
			Binary:     cfg.Traefik.Binary,
			ConfigFile: configFile,
			StateDir:   stateDir,
			Env:        traefikEnv,
			// Hands Traefik over on its own sockets when its static
			// configuration or binary changes.
			MetricsAddress: cfg.Traefik.Metrics,
			HandoverDrain:  time.Duration(cfg.Traefik.HandoverDrain),
			Registry:       reg,
			Logger:         log,
		})
		if err != nil {
			return err
		}
		parts = append(parts, tasks.Task{Name: "traefik", Run: proc.Run})
	}
	parts = append(parts, tasks.Task{Name: "zbus", Run: func(ctx context.Context) error {
		return gateway.Serve(ctx, gateway.BusConfig{Broker: cfg.Broker, Workers: cfg.Workers, Logger: log}, mod)
	}})

	log.Info().Str("root", root).Str("broker", gateway.RedactBroker(cfg.Broker)).Str("domain", cfg.Public.Domain).
		Str("ipv4", cfg.Public.IPv4).Str("ipv6", cfg.Public.IPv6).Bool("public_from_network", fromNetwork).Msg("gateway starting")
	err = tasks.Run(ctx, log, parts...)
	if err == nil && errors.Is(context.Cause(ctx), errPublicChanged) {
		log.Info().Msg("gateway stopped, to start again with the node's new public configuration")
		return errPublicChanged
	}
	log.Info().Msg("gateway stopped")
	return err
}

// importLegacyCertificates takes over the certificates Traefik's HTTP-01
// resolver obtained for user domains before the gateway obtained them itself,
// so that no domain needs a new order, then renames that storage: Traefik,
// which no longer has the resolver, would never renew nor prune them. A
// certificate whose domain is no longer routed is kept as retired
// (--acme.keepretired), then deleted.
func importLegacyCertificates(stateDir string, m *certs.Manager, log zerolog.Logger) {
	legacy, err := traefik.LegacyHTTPStorage(stateDir)
	if err != nil {
		log.Error().Err(err).Msg("reading the certificates of Traefik's former HTTP-01 resolver; they are not imported")
		return
	}
	if len(legacy) == 0 {
		if err := traefik.RetireLegacyHTTPStorage(stateDir); err != nil {
			log.Warn().Err(err).Msg("renaming the storage of Traefik's former HTTP-01 resolver")
		}
		return
	}
	imported := 0
	for _, c := range legacy {
		if err := m.Import(strings.ToLower(c.Main), c.Certificate, c.Key); err != nil {
			log.Warn().Err(err).Str("fqdn", c.Main).Msg("certificate of Traefik's former HTTP-01 resolver not imported")
			continue
		}
		imported++
	}
	if err := traefik.RetireLegacyHTTPStorage(stateDir); err != nil {
		log.Error().Err(err).Msg("renaming the storage of Traefik's former HTTP-01 resolver; it is imported again at the next start")
		return
	}
	log.Info().Int("imported", imported).Int("found", len(legacy)).Msg("certificates of Traefik's former HTTP-01 resolver taken over")
}
