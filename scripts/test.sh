#!/usr/bin/env bash
# Quick start: install build dependencies if missing, build, and run every
# test (unit and integration). Extra arguments go to meson setup, e.g.
#   scripts/test.sh -Db_sanitize=address,undefined
# BUILD_DIR picks the build directory (default: build).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
dir=${BUILD_DIR:-build}
if [ -d "$dir" ]; then
	[ $# -eq 0 ] || meson configure "$dir" "$@" >/dev/null
else
	meson setup "$dir" "$@" >/dev/null
fi
meson compile -C "$dir" >/dev/null
meson test -C "$dir" --print-errorlogs ${MESON_TEST_ARGS:-}
