#!/usr/bin/env bash
# install-bench-tools.sh installs what the benchmarks in bench/ run against:
# dnsmasq and dnsperf (bench/dns.go) and wrk. It is idempotent: it refreshes
# the package lists only when a package is missing, and does nothing when all
# are installed.
set -euo pipefail

packages=(dnsmasq dnsperf wrk)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "bench tools already installed: ${packages[*]}" >&2
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi

echo "installing missing bench tools: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update
$sudo apt-get install -y "${packages[@]}"

# The Debian package also enables a system dnsmasq on port 53, which the
# gateway's own DNS server needs; the benchmark starts its own dnsmasq.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet dnsmasq 2>/dev/null; then
  echo "note: the system dnsmasq service is running on port 53; stop it with" \
    "'systemctl disable --now dnsmasq' if the gateway must answer there" >&2
fi
