#!/usr/bin/env bash
# Installs the Debian packages the test suite and benchmarks use, when they are missing.
# Usage: scripts/ensure-system-deps.sh [test|bench]
set -euo pipefail
want=(poppler-utils:pdftoppm chromium:chromium)
if [ "${1:-test}" = bench ]; then want+=(nginx:nginx wrk:wrk); fi
missing=()
for pair in "${want[@]}"; do
  pkg=${pair%%:*}; cmd=${pair##*:}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "Missing system packages: ${missing[*]}. Install them with your package manager, then re-run." >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "Installing system packages: ${missing[*]} (apt-get)..." >&2
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
