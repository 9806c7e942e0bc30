#!/usr/bin/env bash
# Every header in src/ compiles on its own, first in a file, and twice
# (STYLE.md: "Every header must compile on its own"). Usage:
#   headers.sh SRC_DIR BUILD_ROOT CC [CC args...]
set -euo pipefail
src=$1 build=$2
shift 2
fail=0 n=0
for h in "$src"/*.h; do
	name=${h##*/}
	n=$((n + 1))
	if ! out=$(printf '#include "%s"\n#include "%s"\n' "$name" "$name" |
		"$@" -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Wpedantic -Werror \
			-fsyntax-only -I "$src" -I "$build" -x c - 2>&1); then
		printf 'not self-contained: %s\n%s\n' "$name" "$out"
		fail=1
	fi
done
[ "$n" -gt 0 ] || { echo "no headers found in $src"; exit 1; }
echo "$n headers checked"
exit $fail
