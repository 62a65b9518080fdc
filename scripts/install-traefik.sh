#!/usr/bin/env bash
# install-traefik.sh builds the pinned Traefik from its Go module, with the
# patches of scripts/traefik/*.patch applied, and caches the binary outside the
# repository, keyed by version and by a hash of the patches (so that a changed
# patch is never served by an old build). It prints the path of the binary.
# Traefik's go.mod has replace directives, so `go install` refuses it; building
# inside a writable copy of the module directory works.
set -euo pipefail
cd "$(dirname "$0")/.."

version="${TRAEFIK_VERSION:-v3.6.12}"
cache="${GATEWAY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gateway}"

# The patches, in name order; docs/OPERATIONS.md says why each exists.
patches=()
for p in scripts/traefik/*.patch; do
  [ -e "$p" ] && patches+=("$PWD/$p")
done
key="$version"
if [ ${#patches[@]} -gt 0 ]; then
  key="$version-$(cat "${patches[@]}" | sha256sum | cut -c1-12)"
fi
bin="$cache/traefik-$key/traefik"

if [ -x "$bin" ] && "$bin" version >/dev/null 2>&1; then
  echo "$bin"
  exit 0
fi

if [ ${#patches[@]} -gt 0 ] && ! command -v patch >/dev/null; then
  echo "patch(1) is needed to build traefik (apt-get install patch)" >&2
  exit 1
fi

mkdir -p "$cache"
echo "building traefik $key (takes a few minutes)" >&2
dir=$(go mod download -json "github.com/traefik/traefik/v3@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] || { echo "traefik module $version not downloaded" >&2; exit 1; }

work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -r "$dir/." "$work/"
chmod -R u+w "$work"
(
  cd "$work"
  for p in "${patches[@]}"; do
    # No fuzz, no reversed or already-applied hunks: a patch that does not
    # apply exactly to this version stops the build.
    if ! patch -p1 --forward --batch --fuzz=0 --no-backup-if-mismatch -r - < "$p" >&2; then
      echo "patch $p does not apply to traefik $version" >&2
      exit 1
    fi
  done
  GOFLAGS=-mod=mod go build -trimpath \
    -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$version" \
    -o "$work/traefik.bin" ./cmd/traefik
)
mkdir -p "$(dirname "$bin")"
mv "$work/traefik.bin" "$bin.tmp"
mv "$bin.tmp" "$bin"
echo "$bin"
