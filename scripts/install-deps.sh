#!/usr/bin/env bash
# install-deps.sh installs what the gateway's tests and local node need on a
# fresh Debian machine with Go: redis-server from Debian, Pebble (a test ACME
# server) with go install, and Traefik built from its module with our patches
# (patch, from Debian, applies them). It is
# idempotent and prints KEY=value lines for the Makefile:
#   TRAEFIK_BIN, PEBBLE_BIN, PEBBLE_CHALLTESTSRV_BIN, REDIS_SERVER
set -euo pipefail
cd "$(dirname "$0")/.."

pebble_version="${PEBBLE_VERSION:-v2.10.1}"
cache="${GATEWAY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gateway}"

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${missing[*]}" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
}

apt_install redis-server patch

# Pebble and its DNS/HTTP test server, in a folder of their own keyed by
# version so that a newer one elsewhere on PATH does not interfere.
pebble_dir="$cache/pebble-$pebble_version"
if [ ! -x "$pebble_dir/pebble" ] || [ ! -x "$pebble_dir/pebble-challtestsrv" ]; then
  echo "installing pebble $pebble_version" >&2
  mkdir -p "$pebble_dir"
  GOBIN="$pebble_dir" go install "github.com/letsencrypt/pebble/v2/cmd/pebble@$pebble_version" >&2
  GOBIN="$pebble_dir" go install "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@$pebble_version" >&2
fi

traefik_bin=$(scripts/install-traefik.sh)

echo "TRAEFIK_BIN=$traefik_bin"
echo "PEBBLE_BIN=$pebble_dir/pebble"
echo "PEBBLE_CHALLTESTSRV_BIN=$pebble_dir/pebble-challtestsrv"
echo "REDIS_SERVER=$(command -v redis-server)"
