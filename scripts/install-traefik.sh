#!/usr/bin/env bash
# install-traefik.sh builds the pinned Traefik from its Go module and caches
# the binary outside the repository, keyed by version. It prints the path of
# the binary. Traefik's go.mod has replace directives, so `go install` refuses
# it; building inside a writable copy of the module directory works.
set -euo pipefail

version="${TRAEFIK_VERSION:-v3.6.12}"
cache="${GATEWAY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gateway}"
bin="$cache/traefik-$version/traefik"

if [ -x "$bin" ] && "$bin" version >/dev/null 2>&1; then
  echo "$bin"
  exit 0
fi

mkdir -p "$cache"
echo "building traefik $version (takes a few minutes)" >&2
dir=$(go mod download -json "github.com/traefik/traefik/v3@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] || { echo "traefik module $version not downloaded" >&2; exit 1; }

work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -r "$dir/." "$work/"
chmod -R u+w "$work"
(
  cd "$work"
  GOFLAGS=-mod=mod go build -trimpath \
    -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$version" \
    -o "$work/traefik.bin" ./cmd/traefik
)
mkdir -p "$(dirname "$bin")"
mv "$work/traefik.bin" "$bin.tmp"
mv "$bin.tmp" "$bin"
echo "$bin"
