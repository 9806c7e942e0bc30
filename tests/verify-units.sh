#!/bin/sh
# Verify the configured units with systemd-analyze (any output is a
# failure) and check the hardening score. $1: dir with the configured
# units, $2: the built netechod.
set -eu
dir=$1 bin=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for u in netechod.service netechod.socket; do
	sed "s#^\(Exec[A-Za-z]*=\)[^ ]*/netechod#\1$bin#" "$dir/$u" >"$tmp/$u"
done
out=$(systemd-analyze verify --man=no "$tmp/netechod.service" "$tmp/netechod.socket" 2>&1 || true)
if [ -n "$out" ]; then
	printf '%s\n' "$out"
	echo "FAIL: systemd-analyze verify printed the above"
	exit 1
fi
systemd-analyze security --offline=true --threshold=20 "$tmp/netechod.service" | tail -n 1
echo "units verify cleanly"
