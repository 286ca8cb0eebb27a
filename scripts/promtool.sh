#!/usr/bin/env bash
# Prints the path of a `promtool` (Prometheus's own linter of the text format), fetching Debian's
# `prometheus` package into a cache outside the clone the first time (~19 MB; nothing is installed
# system-wide). `.ci/run` exports it as PHI4R_PROMTOOL, so `tests/runtime.rs` runs
# `promtool check metrics` on a real scrape of `/metrics`.
#
#   PHI4R_PROMTOOL=$(scripts/promtool.sh) cargo test -p phi4r-actors --test runtime
set -euo pipefail

if command -v promtool >/dev/null; then
    command -v promtool
    exit 0
fi
CACHE="${PHI4R_PROMTOOL_CACHE:-${HOME:-/tmp}/.cache/phi4r/promtool}"
BIN="$CACHE/usr/bin/promtool"
if [ ! -x "$BIN" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && apt-get download prometheus >&2)
    rm -rf "$CACHE.tmp" && mkdir -p "$CACHE.tmp"
    dpkg-deb -x "$tmp"/prometheus_*.deb "$CACHE.tmp"
    rm -rf "$CACHE" && mv "$CACHE.tmp" "$CACHE"
fi
"$BIN" --version >&2
echo "$BIN"
