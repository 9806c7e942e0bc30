#!/bin/bash
# Build the netechod .deb from a clean copy of the tree and lint it.
#
#   packaging/build-deb.sh [OUTDIR]        (default OUTDIR: build-deb/)
#
# Copies the tree (the files git knows, committed or not, or everything but
# build*/ outside git) to a scratch directory, copies packaging/debian/ to
# debian/ there, runs `dpkg-buildpackage -us -uc -b`, puts the .deb,
# .buildinfo and .changes in OUTDIR, and runs lintian on the .changes: any
# error or warning (unless overridden, with a reason, in
# packaging/debian/netechod.lintian-overrides) fails the script.
# DEB_BUILD_OPTIONS passes through (CI uses nocheck). Needs dpkg-dev,
# debhelper, lintian and the Build-Depends of packaging/debian/control.
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
out=${1:-$src/build-deb}
mkdir -p "$out"
out=$(cd "$out" && pwd)

for tool in dpkg-buildpackage dpkg-parsechangelog dh lintian; do
	command -v "$tool" >/dev/null || { echo "build-deb: $tool not found (apt-get install dpkg-dev debhelper lintian)" >&2; exit 1; }
done

version=$(dpkg-parsechangelog -l "$src/packaging/debian/changelog" -S Version)
upstream=${version%-*}
meson_version=$(sed -n "s/^[[:space:]]*version[[:space:]]*:[[:space:]]*'\([^']*\)'.*/\1/p" "$src/meson.build" | head -n1)
if [ "$upstream" != "$meson_version" ]; then
	echo "build-deb: packaging/debian/changelog is $version but meson.build says $meson_version" >&2
	exit 1
fi

work=$(mktemp -d /tmp/netechod-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
tree=$work/netechod-$upstream
mkdir "$tree"
if [ "$(git -C "$src" rev-parse --show-toplevel 2>/dev/null)" = "$src" ]; then
	# (files deleted but not yet committed are left out)
	# shellcheck disable=SC2016 # $f is the inner shell's
	git -C "$src" ls-files -z --cached --others --exclude-standard |
		(cd "$src" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' _) |
		tar -C "$src" --null -T - -cf - | tar -C "$tree" -xf -
else
	tar -C "$src" --exclude='./build*' --exclude=./debian -cf - . | tar -C "$tree" -xf -
fi
rm -rf "$tree/debian"
cp -a "$src/packaging/debian" "$tree/debian"

echo "build-deb: building netechod $version in $tree (DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS:-})"
(cd "$tree" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1 || {
	tail -n 60 "$work/build.log" >&2
	echo "build-deb: dpkg-buildpackage failed (last lines above)" >&2
	exit 1
}

arch=$(dpkg-architecture -qDEB_HOST_ARCH)
changes=netechod_${version}_${arch}.changes
for f in "$work"/*_"$version"_*.deb "$work"/netechod_"$version"_*.buildinfo "$work/$changes"; do
	cp "$f" "$out/"
done
cp "$work/build.log" "$out/build.log"
# shellcheck disable=SC2012 # our own file names
echo "build-deb: $(cd "$out" && ls ./*_"$version"_*.deb | paste -sd" " -)"
dpkg-deb --info "$out"/netechod_"$version"_"$arch".deb | sed -n 's/^ \(Package\|Version\|Depends\|Installed-Size\):/  &/p'

# Overridden tags are shown (O:) with the info ones (I:); only E: and W:
# fail. (With --show-overrides, --fail-on would count the overridden ones.)
echo "build-deb: lintian $(dpkg-query -W -f='${Version}' lintian)"
rc=0
lintian --display-info --show-overrides "$out/$changes" >"$out/lintian.log" 2>&1 || rc=$?
grep -v '^running with root privileges' "$out/lintian.log" || true
if [ "$rc" -gt 2 ] || grep -q '^[EW]: ' "$out/lintian.log"; then
	echo "build-deb: lintian found errors or warnings (or failed, exit $rc)" >&2
	exit 1
fi
echo "build-deb: lintian: no errors, no warnings ($(grep -c '^I: ' "$out/lintian.log" || true) info, $(grep -c '^O: ' "$out/lintian.log" || true) overridden)"
