#!/usr/bin/env bash
# Quick start: install build dependencies if missing, build, and run netechod
# in the foreground on the shipped config (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
[ -d build ] || meson setup build >/dev/null
meson compile -C build >/dev/null
exec build/src/netechod -c conf/netechod.conf "$@"
