#!/usr/bin/env bash
# Every header in src/ and its directories compiles on its own, first in a
# file, and twice (STYLE.md: "Every header must compile on its own"), with
# only the include path its directory may use: itself, the directories it
# links (STYLE.md, Tree) and BUILD_ROOT (build-config.h). Usage:
#   headers.sh SRC_DIR BUILD_ROOT DIR[:DEP...]... -- CC [CC args...]
# DIR and DEP are relative to SRC_DIR ("." is SRC_DIR itself), for example
# `base netecho:base .:base`. A directory with headers that no DIR names fails.
set -euo pipefail
src=$1 build=$2
shift 2
dirs=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do
	dirs+=("$1")
	shift
done
[ $# -gt 1 ] || { echo "usage: $0 SRC_DIR BUILD_ROOT DIR[:DEP...]... -- CC [CC args...]" >&2; exit 64; }
shift

fail=0 n=0
declare -A seen=()
for spec in "${dirs[@]}"; do
	IFS=: read -r -a parts <<<"$spec"
	dir=${parts[0]}
	seen[$dir]=1
	incs=()
	for p in "${parts[@]}"; do
		incs+=(-I "$src/$p")
	done
	for h in "$src/$dir"/*.h; do
		[ -e "$h" ] || continue
		name=${h##*/}
		n=$((n + 1))
		if ! out=$(printf '#include "%s"\n#include "%s"\n' "$name" "$name" |
			"$@" -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Wpedantic -Werror \
				-fsyntax-only "${incs[@]}" -I "$build" -x c - 2>&1); then
			printf 'not self-contained (in %s with -I %s): %s\n%s\n' \
				"$dir" "${spec//:/ }" "$name" "$out"
			fail=1
		fi
	done
done

# A directory with headers that nobody listed would go unchecked.
while IFS= read -r d; do
	rel=${d#"$src"}
	rel=${rel#/}
	[ -n "$rel" ] || rel=.
	if [ -z "${seen[$rel]:-}" ]; then
		echo "headers in $src/$rel but no DIR names it (tests/meson.build)"
		fail=1
	fi
done < <(find "$src" -name '*.h' -printf '%h\n' | sort -u)

[ "$n" -gt 0 ] || { echo "no headers found in $src"; exit 1; }
echo "$n headers checked"
exit $fail
