// Package tasks runs the long-lived parts of a daemon together: when one
// fails, the others are stopped, so that the supervisor restarts the whole.
package tasks

import (
	"context"
	"errors"
	"fmt"

	"github.com/rs/zerolog"
)

// Task is a part of the daemon that runs until ctx ends.
type Task struct {
	Name string
	Run  func(ctx context.Context) error
}

// Run runs every task until ctx ends or one fails, then stops the rest and
// returns the first failure. A task that returns nil or ctx's error has
// simply ended.
func Run(ctx context.Context, log zerolog.Logger, tasks ...Task) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(tasks))
	for _, t := range tasks {
		go func() {
			err := t.Run(ctx)
			if err != nil && !errors.Is(err, context.Canceled) {
				err = fmt.Errorf("%s: %w", t.Name, err)
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
