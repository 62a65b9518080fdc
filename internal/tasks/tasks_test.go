package tasks

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestOneFailureStopsTheOthers(t *testing.T) {
	boom := errors.New("boom")
	stopped := make(chan struct{})
	err := Run(context.Background(), zerolog.Nop(),
		Task{"fails", func(context.Context) error { return boom }},
		Task{"waits", func(ctx context.Context) error { <-ctx.Done(); close(stopped); return ctx.Err() }},
	)
	if !errors.Is(err, boom) || err.Error() != "fails: boom" {
		t.Fatalf("err = %v", err)
	}
	select {
	case <-stopped:
	case <-time.After(time.Second):
		t.Fatal("the other task was not stopped")
	}
}

func TestEndOfContextIsNotAFailure(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Run(ctx, zerolog.Nop(), Task{"waits", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }})
	if err != nil {
		t.Fatalf("err = %v", err)
	}
}
