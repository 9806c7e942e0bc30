#!/bin/sh
# `meson install --destdir` into a temp dir must give the layout of SPEC
# section 8, with the unit paths substituted, and an installed config that
# the installed daemon accepts, and the bash completions in their
# directory. Env: BUILD_ROOT, SOURCE_ROOT (meson sets them).
set -eu
build=${BUILD_ROOT:?}
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
meson install -C "$build" --destdir "$dest" --no-rebuild --quiet >/dev/null

passed=0 failed=0
check() { # description, command...
	d=$1
	shift
	if "$@" >/dev/null 2>&1; then
		passed=$((passed + 1))
		echo "ok: $d"
	else
		failed=$((failed + 1))
		echo "FAIL: $d"
	fi
}
find1() { find "$dest" -path "$1" -type f | head -n 1; }

sbin=$(find1 '*/sbin/netechod')
bin=$(find1 '*/bin/netecho')
conf=$(find1 '*/netechod/netechod.conf')
service=$(find1 '*/systemd/system/netechod.service')
socket=$(find1 '*/systemd/system/netechod.socket')
check "sbin/netechod" test -x "$sbin"
check "bin/netecho" test -x "$bin"
check "man8/netechod.8" test -n "$(find1 '*/man8/netechod.8')"
check "man5/netechod.conf.5" test -n "$(find1 '*/man5/netechod.conf.5')"
check "man1/netecho.1" test -n "$(find1 '*/man1/netecho.1')"
check "etc/netechod/netechod.conf" test -f "$conf"
check "netechod.service in systemd's unit dir" test -f "$service"
check "netechod.socket in systemd's unit dir" test -f "$socket"

# The unit names the installed binary and config (paths without destdir).
exec_start=$(sed -n 's/^ExecStart=//p' "$service")
check "ExecStart= runs the installed netechod" test "${exec_start%% *}" = "${sbin#"$dest"}"
check "ExecStart= reads the installed config" test "${exec_start##* }" = "${conf#"$dest"}"
check "ExecReload= checks the installed config first" \
	grep -qx "ExecReload=${sbin#"$dest"} -t -c ${conf#"$dest"}" "$service"
check "no @placeholders@ left in the units" sh -c "! grep -q '@[a-z]*@' '$service' '$socket'"
# The bash completions, where the build said (-Dbashcompletiondir, else
# bash-completion's pkg-config completionsdir under our datadir, else
# DATADIR/bash-completion/completions), as shipped in shell-completion/.
compdir=$(meson introspect --buildoptions "$build" | python3 -c '
import json, os, subprocess, sys
o = {x["name"]: x["value"] for x in json.load(sys.stdin)}
prefix, datadir, d = o["prefix"], os.path.join(o["prefix"], o["datadir"]), o["bashcompletiondir"]
if d == "":
    try:
        d = subprocess.run(["pkg-config",
                            "--define-variable=datadir=" + datadir,
                            "--variable=completionsdir", "bash-completion"],
                           capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        d = os.path.join(datadir, "bash-completion", "completions")
print(d if d == "no" else os.path.join(prefix, d))')
if [ "$compdir" = no ]; then
	check "-Dbashcompletiondir=no: no completions installed" \
		test -z "$(find "$dest" -path '*/completions/netecho*')"
else
	for c in netechod netecho; do
		check "bash completion $compdir/$c" cmp "$dest$compdir/$c" "${SOURCE_ROOT:?}/shell-completion/$c"
	done
fi

check "installed netechod -t accepts the installed config" "$sbin" -t -c "$conf"
check "installed netecho runs" "$bin" -V

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
