#!/usr/bin/env bash
# Install what netechod needs to build and test, from the distribution's own
# packages (Debian 12 / Ubuntu 22.04 or later). Installs only what is missing.
set -euo pipefail

packages=(
	meson ninja-build pkg-config gcc libc6-dev
	libconfig-dev libsystemd-dev libhiredis-dev check
	mandoc socat systemd iproute2 procps
	prometheus  # promtool: the metrics tests check the exposition with it
)
[ "${NETECHOD_DEPS_EXTRA:-}" ] && read -r -a extra <<<"$NETECHOD_DEPS_EXTRA" && packages+=("${extra[@]}")

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep 'install ok installed' >/dev/null || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
echo "deps: installing ${missing[*]}" >&2
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
