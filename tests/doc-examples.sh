#!/bin/sh
# Every complete configuration shown in the documentation must pass
# `netechod -t`: the literal blocks of netechod.conf(5) and netechod(8) that
# declare listeners, and the README's. Env: NETECHOD_BIN, SOURCE_ROOT.
set -eu
src=${SOURCE_ROOT:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# mdoc: text between ".Bd -literal" and ".Ed", escapes undone.
for page in "$src/man/netechod.conf.5" "$src/man/netechod.8"; do
	awk -v out="$tmp/$(basename "$page")" '
		/^\.Bd -literal/ { n++; inblk = 1; next }
		/^\.Ed/ { inblk = 0; next }
		inblk { gsub(/\\\(dq/, "\""); gsub(/\\e/, "\\"); gsub(/\\&/, ""); gsub(/\\-/, "-");
			print > (out "." n) }
	' "$page"
done
# README: fenced blocks.
awk -v out="$tmp/README" '
	/^```/ { if (inblk) inblk = 0; else { n++; inblk = 1 }; next }
	inblk { print > (out "." n) }
' "$src/README.md"

passed=0 failed=0
for f in "$tmp"/*.*; do
	# Only whole configs: they declare listeners and close the list.
	grep -q '^listeners *= *(' "$f" || continue
	grep -q '^);' "$f" || continue
	if out=$("$NETECHOD_BIN" -t -c "$f" 2>&1); then
		passed=$((passed + 1))
		echo "ok: $(basename "$f")"
	else
		failed=$((failed + 1))
		echo "FAIL: $(basename "$f"):"
		echo "$out" | sed 's/^/    /'
		sed 's/^/    | /' "$f"
	fi
done
[ "$passed" -gt 0 ] || { echo "FAIL: no example configs found"; failed=$((failed + 1)); }
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
