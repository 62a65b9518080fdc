#!/usr/bin/env bash
# run.sh starts a local gateway node for trying the module by hand: a
# redis-server of its own on a socket under RUN_DIR, the gateway, and the
# Traefik the gateway supervises, all on loopback and high ports. Ctrl-C
# stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR="${RUN_DIR:-$PWD/run}"
DEPS="${DEPS:-$PWD/.deps.env}"
set -a; . "$DEPS"; set +a

WEB="${WEB:-127.0.0.1:8080}"
WEBSECURE="${WEBSECURE:-127.0.0.1:8443}"
METRICS="${METRICS:-127.0.0.1:8082}"
DNS="${DNS:-127.0.0.1:5353}"
DNS_API="${DNS_API:-127.0.0.1:8053}"
DOMAIN="${DOMAIN:-gw.localhost}"

mkdir -p "$RUN_DIR"
socket="$RUN_DIR/redis.sock"
redis_pid=""
gateway_pid=""

stop() {
  trap - EXIT INT TERM
  [ -n "$gateway_pid" ] && kill "$gateway_pid" 2>/dev/null && wait "$gateway_pid" 2>/dev/null
  # Traefik outlives the gateway on purpose (see docs/OPERATIONS.md); a local
  # node stops it too.
  if [ -f "$RUN_DIR/root/traefik/traefik.pid" ]; then
    pid=$(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' "$RUN_DIR/root/traefik/traefik.pid")
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  fi
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null
  echo "local node stopped"
}
trap stop EXIT INT TERM

"$REDIS_SERVER" --port 0 --unixsocket "$socket" --unixsocketperm 700 --save "" --appendonly no \
  --dir "$RUN_DIR" --logfile "$RUN_DIR/redis.log" &
redis_pid=$!
for _ in $(seq 100); do [ -S "$socket" ] && break; sleep 0.05; done

bin/gateway \
  --broker "unix://$socket" \
  --root "$RUN_DIR/root" \
  --public.domain "$DOMAIN" \
  --public.ipv4 127.0.0.1 \
  --resolver "$DNS" \
  --backends.allow 127.0.0.0/8 \
  --traefik.binary "$TRAEFIK_BIN" \
  --traefik.web "$WEB" \
  --traefik.websecure "$WEBSECURE" \
  --traefik.metrics "$METRICS" \
  --traefik.throttle 100ms \
  --metering.table gateway_meter_local \
  --dns.address "$DNS" \
  --dns.api "$DNS_API" \
  --acme.email "admin@$DOMAIN" \
  --acme.caserver "https://127.0.0.1:14000/dir" \
  "$@" &
gateway_pid=$!

cat <<MSG
local node running:
  zbus broker   unix://$socket
  route files   $RUN_DIR/root/proxy/
  traefik       https://$WEBSECURE (web $WEB, metrics http://$METRICS/metrics)
  traefik log   $RUN_DIR/root/traefik/traefik.log
try it: bin/gatewayctl --broker unix://$socket set-name demo demo http://127.0.0.1:9000
Ctrl-C stops the node.
MSG
wait "$gateway_pid"
