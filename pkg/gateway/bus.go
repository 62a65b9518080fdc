package gateway

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/rs/zerolog"
	"github.com/threefoldtech/zbus"
)

// Defaults of BusConfig.
const (
	// DefaultBroker is the node's Redis, where every module meets.
	DefaultBroker = "unix:///var/run/redis.sock"
	// DefaultWorkers is how many calls are served in parallel.
	DefaultWorkers = 4
	// DefaultRoot is the module's state folder on a node.
	DefaultRoot = "/var/cache/modules/gateway"
)

// brokerRetry is the wait between attempts to reach the broker.
const brokerRetry = time.Second

// BusConfig says where and how the module is served on zbus.
type BusConfig struct {
	// Broker is the Redis URL of zbus: unix:///path or
	// tcp://[password@]host:port. Default DefaultBroker.
	Broker string
	// Workers is how many calls are served in parallel. Default
	// DefaultWorkers.
	Workers uint
	// Logger receives the bus's events.
	Logger zerolog.Logger
}

// Serve registers the module behind a on zbus, as Object, and serves it
// until ctx ends. Redis may not be up yet when the node boots: Serve retries
// until it is.
func Serve(ctx context.Context, cfg BusConfig, a Adapter) error {
	if cfg.Broker == "" {
		cfg.Broker = DefaultBroker
	}
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	log := cfg.Logger.With().Str("component", "zbus").Logger()
	for {
		server, err := zbus.NewRedisServer(ModuleName, cfg.Broker, cfg.Workers)
		if err == nil {
			if err := Register(server, a); err != nil {
				return err
			}
			log.Info().Str("module", ModuleName).Strs("objects", []string{ObjectName, ZosObjectName}).
				Str("version", ObjectVersion).Uint("workers", cfg.Workers).Msg("serving on zbus")
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
		log.Error().Err(err).Str("broker", RedactBroker(cfg.Broker)).Stringer("retry_in", brokerRetry).Msg("connecting to the zbus broker")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(brokerRetry):
		}
	}
}

// Register registers the module behind a on server as Object, which answers
// every generation of the contract, under both its names, the documented one
// and the one zos's callers address: one object, served by the same workers.
func Register(server zbus.Server, a Adapter) error {
	object := Object{M: a.module()}
	for _, name := range []string{ObjectName, ZosObjectName} {
		id := zbus.ObjectID{Name: name, Version: ObjectVersion}
		if err := server.Register(id, object); err != nil {
			return fmt.Errorf("registering %s on zbus: %w", id, err)
		}
	}
	return nil
}

// RedactBroker returns the broker URL without its password, for logs.
func RedactBroker(broker string) string {
	u, err := url.Parse(broker)
	if err != nil || u.User == nil {
		return broker
	}
	u.User = url.User("xxxxx")
	return u.String()
}
