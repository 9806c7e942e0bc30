#!/bin/bash
# deb-e2e.sh — the built .deb works, not just builds: unpack it with dpkg -x
# into a throw-away root and run the packaged netechod with the packaged
# unit and config under a real systemd 252 (../shared/tools/systemd-harness,
# run-unit.sh): start, probes with the packaged netecho, reload to a config
# with one more listener, probes again, stop.
#
#   tests/deb-e2e.sh [PACKAGE.deb]   (default: the newest build-deb/netechod_*.deb,
#                                     as packaging/build-deb.sh leaves it)
#
# Also checks, without systemd: the conffile, the unit's paths, that the
# maintainer scripts enable the service and not the socket, that -V gives
# the package's upstream version and that the packaged config passes -t.
# Exit: 0 passed, 1 a check failed, 77 (skip) where it cannot run (no .deb,
# no harness, not root, no overlayfs or cgroup2).
set -euo pipefail

skip() { echo "SKIP: $*"; exit 77; }
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SDH_DIR=${SDH_DIR:-$src/../shared/tools/systemd-harness}

deb=${1:-}
if [ -z "$deb" ]; then
	# shellcheck disable=SC2012 # our own file names
	deb=$(ls -t "$src"/build-deb/netechod_*.deb 2>/dev/null | head -n1 || true)
	[ -n "$deb" ] || skip "no .deb given and none in build-deb/ (run packaging/build-deb.sh)"
fi
[ -f "$deb" ] || { echo "no such file: $deb" >&2; exit 1; }
command -v dpkg-deb >/dev/null || skip "dpkg-deb is not installed"
[ -x "$SDH_DIR/run-unit.sh" ] || skip "systemd-harness not found at $SDH_DIR"
[ "$(id -u)" = 0 ] || skip "needs root (the harness boots systemd in private namespaces)"
grep -qw overlay /proc/filesystems || skip "no overlayfs in this kernel"
[ -n "$(findmnt -rn -t cgroup2 -o TARGET 2>/dev/null | head -n1)" ] || skip "no cgroup2 hierarchy mounted"

work=$(mktemp -d /tmp/netechod-deb-e2e.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
dpkg-deb -x "$deb" "$root"
dpkg-deb -e "$deb" "$work/DEBIAN"
version=$(dpkg-deb -f "$deb" Version)

passed=0 failed=0
pass() { passed=$((passed + 1)); echo "PASS: $1"; }
fail() { failed=$((failed + 1)); echo "FAIL: $1${2:+: $2}"; }
check() { # description, command...
	local d=$1; shift
	if "$@" >/dev/null 2>&1; then pass "$d"; else fail "$d"; fi
}

bin=$root/usr/sbin/netechod client=$root/usr/bin/netecho
conf=$root/etc/netechod/netechod.conf
service=$root/lib/systemd/system/netechod.service
socket=$root/lib/systemd/system/netechod.socket

# ---- the package's contents ----
check "package: /usr/sbin/netechod, /usr/bin/netecho" test -x "$bin" -a -x "$client"
check "package: /etc/netechod/netechod.conf is a conffile" grep -qx /etc/netechod/netechod.conf "$work/DEBIAN/conffiles"
check "package: netechod.service and netechod.socket in /lib/systemd/system" test -f "$service" -a -f "$socket"
check "package: ExecStart= runs /usr/sbin/netechod on /etc/netechod/netechod.conf" \
	grep -qx 'ExecStart=/usr/sbin/netechod -c /etc/netechod/netechod.conf' "$service"
check "package: postinst enables and starts netechod.service" \
	sh -c "grep -q \"deb-systemd-helper enable 'netechod.service'\" '$work/DEBIAN/postinst' &&
	       grep -q \"deb-systemd-invoke \\\$_dh_action 'netechod.service'\" '$work/DEBIAN/postinst'"
check "package: postinst does not enable netechod.socket on a new install" \
	sh -c "grep -B3 \"enable 'netechod.socket'\" '$work/DEBIAN/postinst' | grep -q 'was-enabled'"
check "package: completions in /usr/share/bash-completion/completions" \
	test -f "$root/usr/share/bash-completion/completions/netechod" -a -f "$root/usr/share/bash-completion/completions/netecho"
check "package: man pages" test -f "$root/usr/share/man/man8/netechod.8.gz" -a -f "$root/usr/share/man/man5/netechod.conf.5.gz" -a -f "$root/usr/share/man/man1/netecho.1.gz"
got=$("$bin" -V 2>&1 || true)
if [ "$got" = "netechod ${version%-*}" ]; then pass "netechod -V: '$got' (package $version)"
else fail "netechod -V" "'$got', package $version"; fi
check "packaged netechod -t accepts the packaged config" "$bin" -t -c "$conf"

# ---- under systemd ----
# The reload adds a listener; the probe (run after start and after reload)
# talks to it once the installed config has it.
awk '/^\);$/ { print ",\t{ name = \"deb-e2e\"; protocol = \"tcp\"; address = \"localhost\"; port = 7099; model = \"poll\"; service = \"echo\"; }" } { print }' \
	"$conf" >"$work/reload.conf"
"$bin" -t -c "$work/reload.conf" >/dev/null || { echo "reload config is invalid" >&2; exit 1; }
cat >"$work/probe.sh" <<'PROBE'
set -e
netecho echo -t 5 localhost 7001
netecho echo -t 5 -u localhost 7001 "udp from deb-e2e"
netecho echo -t 5 localhost 7002 "select model"
netecho echo -t 5 -u localhost 7005 "udp, fork model"
out=$(printf 'hello\n' | timeout 10 netecho chat localhost 7070 debe2e)
case $out in *"* you are debe2e@"*) echo "chat: joined lobby" ;; *) echo "chat: $out"; exit 1 ;; esac
if grep -q 'port = 7099' /etc/netechod/netechod.conf; then
	netecho echo -t 5 localhost 7099 "listener added by reload"
fi
PROBE
rc=0
"$SDH_DIR/run-unit.sh" --bin "$bin" --service "$service" --config "$conf" \
	--reload-config "$work/reload.conf" \
	--file "$client:/usr/bin/netecho" --file "$work/probe.sh:/usr/local/lib/netechod-deb-e2e/probe.sh" \
	--file "$root/usr/share/man/man8/netechod.8.gz:/usr/share/man/man8/netechod.8.gz" \
	--file "$root/usr/share/man/man5/netechod.conf.5.gz:/usr/share/man/man5/netechod.conf.5.gz" \
	--setup 'chmod 0755 /usr/bin/netecho' \
	--probe 'sh /usr/local/lib/netechod-deb-e2e/probe.sh' >"$work/run.log" 2>&1 || rc=$?
[ -z "${DEB_E2E_KEEP_LOG:-}" ] || cp "$work/run.log" "$DEB_E2E_KEEP_LOG"
probes=$(grep -c '^ECHO OK' "$work/run.log" || true)
if [ "$rc" = 0 ] && grep -q '^RESULT: PASS' "$work/run.log"; then
	pass "systemd: start active, probes, reload active (same MainPID), stop Result=success"
else fail "systemd: run-unit.sh exited $rc"; fi
# 4 echoes and a chat after start; 5 and a chat after the reload.
if [ "$probes" -ge 9 ] && [ "$(grep -c '^chat: joined lobby' "$work/run.log")" -ge 2 ]; then
	pass "systemd: $probes ECHO OK from the packaged netecho, chat joined twice, the listener added by reload answers"
else fail "systemd: probes" "$probes ECHO OK (want 9)"; fi
# (with the packaged man pages installed: verify looks up Documentation=)
if grep -q '^verify: OK' "$work/run.log"; then pass "systemd: systemd-analyze verify of the packaged unit inside: OK"
else fail "systemd: systemd-analyze verify of the packaged unit" "$(grep -m3 -i 'verify' "$work/run.log" | paste -sd'|' -)"; fi
if grep -q 'MainPID changed' "$work/run.log"; then fail "systemd: MainPID changed across reload"; fi
sed -n '/===== SUMMARY/,$p' "$work/run.log"
if [ "$failed" -gt 0 ]; then
	echo "---- run-unit.sh log ----"
	tail -n 80 "$work/run.log"
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
