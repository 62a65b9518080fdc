# The gateway's two commands: `make run` starts a local node, `make test`
# installs what the tests need and runs them all.
GO      ?= go
RUN_DIR ?= $(CURDIR)/run
DEPS    := $(CURDIR)/.deps.env

.PHONY: all build test unit integration e2e fuzz run bench generate deps clean

all: build

build:
	$(GO) build -o bin/ ./cmd/...

# deps installs redis-server, Pebble and Traefik and records their paths.
deps:
	scripts/install-deps.sh > $(DEPS).tmp && mv $(DEPS).tmp $(DEPS)

# test runs everything: vet, unit tests with the race detector, a short run of
# every fuzz target, then the integration and end-to-end suites against real
# redis-server, Traefik and Pebble.
test: deps
	$(GO) vet ./... && $(GO) vet -tags integration,e2e ./...
	$(MAKE) generate && git diff --exit-code pkg/gateway/stubs pkg/gateway/zos pkg/gateway/contracts && test -z "$$(git status --porcelain pkg/gateway/stubs pkg/gateway/zos pkg/gateway/contracts)"
	$(GO) test -race -count=1 ./internal/... ./pkg/... ./cmd/...
	$(MAKE) fuzz FUZZTIME=5000x
	set -a && . $(DEPS) && set +a && $(GO) test -count=1 -timeout 20m -tags integration ./pkg/... ./test/integration/...
	set -a && . $(DEPS) && set +a && $(GO) test -count=1 -timeout 30m -tags e2e ./pkg/certs/... ./test/harness/... ./test/e2e/... ./test/acme/...

unit:
	$(GO) test -count=1 ./internal/... ./pkg/... ./cmd/...

integration: deps
	set -a && . $(DEPS) && set +a && $(GO) test -count=1 -timeout 20m -tags integration ./pkg/... ./test/integration/...

e2e: deps
	set -a && . $(DEPS) && set +a && $(GO) test -count=1 -timeout 30m -tags e2e ./pkg/certs/... ./test/harness/... ./test/e2e/... ./test/acme/...

# fuzz runs every fuzz target for FUZZTIME, a duration (30s) or a count of
# inputs (5000x); the go tool fuzzes one target of one package at a time.
# make test uses a count: a duration races the fuzzer's own shutdown on a busy
# machine and fails with "context deadline exceeded" without any finding.
# A failure prints the fuzzer's output; a finding is written under the
# package's testdata/fuzz/<target>/.
FUZZTIME ?= 30s
fuzz:
	@out=$$(mktemp); trap 'rm -f $$out' EXIT; \
	for pkg in $$($(GO) list ./pkg/...); do \
	  for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$target"; \
	    if ! $(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg > $$out 2>&1; then \
	      tail -n 40 $$out; exit 1; \
	    fi; \
	  done; \
	done

# run starts a local node: its own redis-server, the gateway and Traefik on
# high ports, with the domain gw.localhost. Ctrl-C stops all three.
run: deps build
	@# exec: the SIGTERM make passes on to its recipe reaches run.sh, which
	@# stops what it started, as Ctrl-C does.
	RUN_DIR=$(RUN_DIR) DEPS=$(DEPS) exec scripts/run.sh

bench: deps build
	scripts/install-bench-tools.sh
	set -a && . $(DEPS) && set +a && $(GO) run ./bench -out docs/BENCHMARKS.md

generate:
	$(GO) generate ./pkg/gateway/...

clean:
	rm -rf bin $(RUN_DIR) $(DEPS) $(DEPS).tmp
