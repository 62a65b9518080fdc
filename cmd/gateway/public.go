package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/threefoldtech/zbus"

	"github.com/threefoldtech/gateway/internal/tasks"
	"github.com/threefoldtech/gateway/pkg/zosnet"
)

// errPublicChanged is the cause that ends the gateway's parts when the
// node's public configuration changed: run then starts the gateway again.
var errPublicChanged = errors.New("the node's public configuration changed")

// publicFromNetwork reads the node's domain and public IPs from zos's
// network daemon and puts them in cfg.Public, as if flags had given them.
// It returns them and the task that follows their changes: when they
// change it ends every part of the gateway through restart, with cause
// errPublicChanged.
func publicFromNetwork(ctx context.Context, cfg *Configuration, restart context.CancelCauseFunc, log zerolog.Logger) (zosnet.Public, tasks.Task, error) {
	bus, err := zbus.NewRedisClient(cfg.Broker)
	if err != nil {
		return zosnet.Public{}, tasks.Task{}, fmt.Errorf("--broker: %w", err)
	}
	source, err := zosnet.NewPublicSource(zosnet.PublicSourceConfig{
		Bus:      bus,
		Interval: time.Duration(cfg.Public.Interval),
		Logger:   log,
	})
	if err != nil {
		return zosnet.Public{}, tasks.Task{}, err
	}
	public, err := source.First(ctx)
	if err != nil {
		return zosnet.Public{}, tasks.Task{}, err
	}
	cfg.Public.Domain = public.Domain
	cfg.Public.IPv4, cfg.Public.IPv6 = "", ""
	if public.IPv4.IsValid() {
		cfg.Public.IPv4 = public.IPv4.String()
	}
	if public.IPv6.IsValid() {
		cfg.Public.IPv6 = public.IPv6.String()
	}
	follow := tasks.Task{Name: "public config", Run: func(ctx context.Context) error {
		next, err := source.Watch(ctx, public)
		if err != nil {
			return err
		}
		log.Info().Str("component", "public config").Stringer("was", public).Stringer("now", next).
			Msg("the node's public configuration changed: the gateway starts again with it; Traefik keeps serving")
		restart(errPublicChanged)
		return nil
	}}
	return public, follow, nil
}

// restartSelf replaces the process by a new run of its own binary, with the
// same arguments and environment, so that every part (the DNS server,
// Traefik's static configuration, the module) starts with the node's new
// public configuration, as after a restart by the supervisor, which sees no
// exit. The exec releases the store's lock and every socket (all opened
// close-on-exec); Traefik keeps serving and is adopted again, or handed
// over when its configuration changed.
func restartSelf() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the gateway's binary to start it again: %w", err)
	}
	err = syscall.Exec(exe, os.Args, os.Environ())
	return fmt.Errorf("starting the gateway again (%s): %w", exe, err)
}
