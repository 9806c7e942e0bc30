#!/bin/sh
# The client links the base library only (STYLE.md, Tree): the built
# netecho needs no libconfig at run time (ldd), its link command names
# neither libconfig nor the daemon's libnetechod.a (the linker's --as-needed
# would hide an unused libconfig from ldd), and its sources compile without
# the daemon's directory on the include path. Usage:
#   client-links.sh NETECHO_BIN    (env: BUILD_ROOT, SOURCE_ROOT)
set -eu
bin=${1:?usage: client-links.sh NETECHO_BIN}
build=${BUILD_ROOT:?} src=${SOURCE_ROOT:?}

passed=0 failed=0
check() { # description, command...
	d=$1
	shift
	if "$@"; then
		passed=$((passed + 1))
		echo "ok: $d"
	else
		failed=$((failed + 1))
		echo "FAIL: $d"
	fi
}
lacks() { # pattern, text: text has no line matching the pattern
	if printf '%s\n' "$2" | grep -E -e "$1"; then
		return 1
	fi
	return 0
}

libs=$(ldd "$bin")
printf 'ldd %s:\n%s\n' "$bin" "$libs"
check "ldd netecho shows no libconfig" lacks 'libconfig' "$libs"

ninja=$(command -v ninja || command -v samu || true)
if [ -n "$ninja" ]; then
	target=${bin#"$build"/}
	link=$("$ninja" -C "$build" -t commands "$target" | tail -n 1)
	printf 'link: %s\n' "$link"
	check "the link command of netecho names no libconfig" lacks 'libconfig|-lconfig( |$)' "$link"
	check "the link command of netecho names no libnetechod.a" lacks 'libnetechod\.a' "$link"
else
	failed=$((failed + 1))
	echo "FAIL: no ninja to print the link command of netecho"
fi

# Every client target's include path, from meson's own record: it may hold
# src/netecho/, src/base/ and the build root (build-config.h), never src/.
incs=$(meson introspect --targets "$build" | python3 -c '
import json, os, sys
src, build = (os.path.realpath(d) + "/src" for d in sys.argv[1:3])
for t in json.load(sys.stdin):
    if t["defined_in"].endswith(os.path.join("src", "netecho", "meson.build")):
        for s in t["target_sources"]:
            for p in s["parameters"]:
                if p.startswith("-I"):
                    d = os.path.realpath(p[2:])
                    print(t["name"], p, "DAEMON" if d in (src, build) else "")' "$src" "$build")
printf 'client include path:\n%s\n' "$incs"
check "meson lists the client's targets" test -n "$incs"
check "the client compiles without src/ (the daemon's headers) on its include path" \
	lacks ' DAEMON$' "$incs"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
