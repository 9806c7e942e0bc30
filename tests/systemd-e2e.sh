#!/bin/bash
# systemd-e2e.sh — netechod the way an admin runs it: the built daemon with the
# configured units (BUILD_ROOT/systemd/) under a real, throw-away systemd 252
# (shared/tools/systemd-harness: sdh.sh up/exec/down; never systemd by hand).
#
# Checks: unit verification; start (active, STATUS=); echo/chat probes inside
# the container's private network; structured journal fields; reload with a
# good file, with a bad file (ExecReload's `netechod -t` fails it) and a
# failed SIGHUP (StatusText); watchdog; SIGUSR1 counters; a killed handler;
# stop (Result=success, and a fork-model chat client hears the goodbye);
# socket activation through netechod.socket.
#
# Environment: NETECHOD_BIN, SOURCE_ROOT, BUILD_ROOT (meson sets them).
# Prints one line per check and "N passed, N failed"; exits 0, 1 when a
# check failed, 77 (skip) when the harness cannot run here. Bounded: every
# step has a timeout, the container a maximum life, the script a deadline.
set -euo pipefail

skip() { echo "SKIP: $*"; exit 77; }

: "${SOURCE_ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
: "${BUILD_ROOT:?BUILD_ROOT is not set}"
: "${NETECHOD_BIN:=$BUILD_ROOT/src/netechod}"
SDH_DIR=${SDH_DIR:-$SOURCE_ROOT/../shared/tools/systemd-harness}
SDH=$SDH_DIR/sdh.sh
SERVICE_SRC=$BUILD_ROOT/systemd/netechod.service
SOCKET_SRC=$BUILD_ROOT/systemd/netechod.socket

[ -x "$SDH" ] || skip "systemd-harness not found at $SDH_DIR"
[ "$(id -u)" = 0 ] || skip "needs root (the harness boots systemd in private namespaces)"
grep -qw overlay /proc/filesystems || skip "no overlayfs in this kernel"
[ -n "$(findmnt -rn -t cgroup2 -o TARGET 2>/dev/null | head -n1)" ] || skip "no cgroup2 hierarchy mounted"
for tool in unshare nsenter setpriv timeout findmnt; do
	command -v "$tool" >/dev/null || skip "$tool is not installed"
done
[ -x "$NETECHOD_BIN" ] || skip "netechod binary $NETECHOD_BIN not built"
{ [ -f "$SERVICE_SRC" ] && [ -f "$SOCKET_SRC" ]; } || skip "units not configured in $BUILD_ROOT/systemd (systemd feature off?)"

T=20                 # per-step timeout, seconds
TOTAL=110            # the whole script
PASSED=0 FAILED=0
ST=$(mktemp -d /tmp/sdh-e2e.XXXXXX)
WORK=$(mktemp -d /tmp/netechod-e2e.XXXXXX)

# Paths the unit uses.
EXEC_LINE=$(sed -n 's/^[[:space:]]*ExecStart=[[:space:]]*//p' "$SERVICE_SRC" | head -n1)
BIN_DEST=$(printf '%s\n' "$EXEC_LINE" | awk '{print $1}' | sed 's/^[-@:+!|]*//')
CONF_DEST=$(printf '%s\n' "$EXEC_LINE" | awk '{for (i = 1; i < NF; i++) if ($i == "-c" || $i == "--config") print $(i + 1)}')
{ [ -n "$BIN_DEST" ] && [ -n "$CONF_DEST" ]; } || { echo "cannot read ExecStart= paths from $SERVICE_SRC" >&2; exit 1; }

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	[ -n "${WD:-}" ] && kill "$WD" 2>/dev/null && wait "$WD" 2>/dev/null
	"$SDH" down "$ST" >/dev/null 2>&1 || true
	rm -rf "$ST" "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'echo "interrupted or out of time (${TOTAL} s)" >&2; exit 1' INT TERM
# The script's own deadline (the container also dies by itself, --max-life).
# Its output goes nowhere: a lingering sleep must not hold the test
# runner's pipe open after the script ends.
( trap 'exit 0' TERM; sleep "$TOTAL" & wait; kill -TERM $$ 2>/dev/null ) >/dev/null 2>&1 & WD=$!

finish() {
	if [ "$FAILED" -gt 0 ]; then
		echo "---- systemctl status / journal (for the failures above) ----"
		X systemctl status --no-pager --full -n 0 netechod netechod.socket 2>&1 | head -n 20 || true
		X journalctl --no-pager -o short-precise -u netechod -u netechod.socket 2>&1 | tail -n 40 || true
	fi
	echo "$PASSED passed, $FAILED failed"
	[ "$FAILED" = 0 ]
}
pass() { PASSED=$((PASSED + 1)); echo "PASS: $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $1${2:+: $2}"; }

X() { timeout -s KILL "$T" "$SDH" exec "$ST" "$@"; }      # run inside, bounded
show() { X systemctl show -p "$2" --value "$1" 2>/dev/null || true; }
probe() { X python3 /usr/local/lib/netechod-e2e/probe.py "$@" 2>&1; }
jsync() { X journalctl --sync >/dev/null 2>&1 || true; }
cursor() { X journalctl -n 1 --show-cursor -o cat 2>/dev/null | sed -n 's/^-- cursor: //p'; }
journal_after() { jsync; X journalctl --no-pager -u netechod --after-cursor="$1" "${@:2}" 2>/dev/null || true; }

# wait_for SECONDS CMD...: until CMD succeeds (polling; nothing better from
# outside the container), at most SECONDS.
wait_for() {
	local end=$((SECONDS + $1)); shift
	until "$@"; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.1
	done
}
is_state() { [ "$(show "$1" ActiveState)" = "$2" ]; }

# ---- files ----
# Listeners: two tcp echo, one udp echo, two chat (epoll and fork), plus the
# addresses the socket unit listens on (bound by netechod itself until the
# socket phase).
listener() { # name protocol address port model service [extra]
	printf '\t{ name = "%s"; protocol = "%s"; address = "%s"; port = %s; model = "%s"; service = "%s"; %s}' "$@"
}
ACT=()   # "protocol host port" of each socket-unit address
while read -r key val; do
	case $key in ListenStream) proto=tcp;; ListenDatagram) proto=udp;; *) continue;; esac
	case $val in
	\[*\]:*) host=${val%]:*}; host=${host#[}; port=${val##*:};;
	*.*.*.*:*) host=${val%:*}; port=${val##*:};;
	[0-9]*) host=127.0.0.1; port=$val;;
	*) echo "netechod.socket: cannot use $key=$val" >&2; exit 1;;
	esac
	ACT+=("$proto $host $port")
done < <(sed -n 's/^[[:space:]]*\(Listen[A-Za-z]*\)=[[:space:]]*\(.*\)$/\1 \2/p' "$SOCKET_SRC")
[ ${#ACT[@]} -gt 0 ] || { echo "no ListenStream=/ListenDatagram= in $SOCKET_SRC" >&2; exit 1; }
ACT_LISTENERS=()
for i in "${!ACT[@]}"; do
	read -r proto host port <<<"${ACT[$i]}"
	ACT_LISTENERS+=("$(listener "act-$i" "$proto" "$host" "$port" \
		"$([ "$proto" = tcp ] && echo poll || echo select)" echo)")
done

write_conf() { # file, then listener entries
	local f=$1 sep='' e; shift
	{
		echo 'log_level = "info";'
		echo 'shutdown_timeout = 2;'
		echo 'listeners = ('
		for e in "$@" "${ACT_LISTENERS[@]}"; do printf '%s%s' "$sep" "$e"; sep=$',\n'; done
		printf '\n);\n'
	} > "$f"
}
write_conf "$WORK/main.conf" \
	"$(listener echo-a tcp 127.0.0.1 17101 poll echo)" \
	"$(listener echo-b tcp 127.0.0.1 17102 thread echo)" \
	"$(listener echo-u udp 127.0.0.1 17103 select echo)" \
	"$(listener lobby tcp 127.0.0.1 17104 epoll chat)" \
	"$(listener lobby-f tcp 127.0.0.1 17106 fork chat)" \
	"$(listener lb tcp 127.0.0.1 17107 epoll echo 'proxy_protocol = true; proxy_from = [ "127.0.0.0/8" ]; ')"
# Reload: echo-a changed, echo-b removed, echo-c added, the rest unchanged.
write_conf "$WORK/reload.conf" \
	"$(listener echo-a tcp 127.0.0.1 17101 poll echo 'max_clients = 8; ')" \
	"$(listener echo-u udp 127.0.0.1 17103 select echo)" \
	"$(listener lobby tcp 127.0.0.1 17104 epoll chat)" \
	"$(listener lobby-f tcp 127.0.0.1 17106 fork chat)" \
	"$(listener echo-c tcp 127.0.0.1 17105 fork echo)" \
	"$(listener lb tcp 127.0.0.1 17107 epoll echo 'proxy_protocol = true; proxy_from = [ "127.0.0.0/8" ]; ')"
N_MAIN=$((6 + ${#ACT[@]})) N_RELOAD=$((6 + ${#ACT[@]}))
BAD_LINE=4
{ sed -n '1,3p' "$WORK/reload.conf"; echo '	@@@ not libconfig'; sed -n '4,$p' "$WORK/reload.conf"; } > "$WORK/bad.conf"
for f in main reload; do
	"$NETECHOD_BIN" -t -c "$WORK/$f.conf" >/dev/null || { echo "test config $f.conf is invalid" >&2; exit 1; }
done

cat > "$WORK/watchdog.conf" <<'EOF'
[Service]
WatchdogSec=1s
EOF

# Runs inside the container; one attempt each, bounded by socket timeouts.
cat > "$WORK/probe.py" <<'EOF'
import socket, sys
mode, port = sys.argv[1], int(sys.argv[2])
arg = sys.argv[3] if len(sys.argv) > 3 else "ping from e2e"
host = sys.argv[4] if len(sys.argv) > 4 else "127.0.0.1"
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
try:
    if mode == "tcp":
        s = socket.create_connection((host, port), timeout=10)
        s.sendall(arg.encode())
        got = b""
        while len(got) < len(arg):
            b = s.recv(4096)
            if not b:
                break
            got += b
        ok = got == arg.encode()
    elif mode == "proxy":
        # A PROXY v1 header naming 192.0.2.7:4711, then an echo.
        s = socket.create_connection((host, port), timeout=10)
        s.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 4711 %d\r\n" % port + arg.encode())
        got = b""
        while len(got) < len(arg):
            b = s.recv(4096)
            if not b:
                break
            got += b
        ok = got == arg.encode()
    elif mode == "udp":
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.settimeout(10)
        s.connect((host, port))
        s.send(arg.encode())
        got = s.recv(65536)
        ok = got == arg.encode()
    elif mode == "chat":
        s = socket.create_connection((host, port), timeout=10)
        got = b""
        while b"\n" not in got:
            b = s.recv(4096)
            if not b:
                break
            got += b
        ok = got.startswith(("* welcome to " + arg).encode())
    elif mode == "goodbye":
        # Join as nickname arg, print "joined", then read until the server
        # closes: the last line must be the goodbye (SPEC 5.8).
        s = socket.create_connection((host, port), timeout=15)
        f = s.makefile("rb")
        welcome = f.readline()
        s.sendall(arg.encode() + b"\n")
        joined = f.readline()
        if not joined.startswith(("* you are " + arg + "@").encode()):
            print("%s %s:%d: join failed: %r %r" % (mode, host, port, welcome, joined))
            sys.exit(1)
        print("joined", flush=True)
        got = f.read()
        ok = got.endswith(b"* server shutting down\r\n")
    elif mode == "closed":
        # refused, or accepted and never answered
        try:
            s = socket.create_connection((host, port), timeout=2)
        except ConnectionRefusedError:
            print("refused"); sys.exit(0)
        s.settimeout(0.5)
        s.sendall(b"x")
        try:
            got = s.recv(1)
        except (socket.timeout, ConnectionResetError):
            got = b""
        ok = got == b""
    else:
        print("unknown mode", mode); sys.exit(2)
except OSError as e:
    print("%s %s:%d: %s" % (mode, host, port, e)); sys.exit(1)
print("%s %s:%d: %s -> %r" % (mode, host, port, "ok" if ok else "unexpected reply", got[:80]))
sys.exit(0 if ok else 1)
EOF

# ---- boot ----
if ! timeout -s KILL 60 "$SDH" up "$ST" --max-life $((TOTAL + 30)) >"$WORK/up.log" 2>&1; then
	cat "$WORK/up.log" "$ST/stage1.log" 2>/dev/null | tail -n 20 >&2
	fail "boot the throw-away systemd"
	echo "$PASSED passed, $FAILED failed"
	exit 1
fi
ROOT=/proc/$("$SDH" pid "$ST")/root
install -D -m 0755 "$NETECHOD_BIN" "$ROOT$BIN_DEST"
install -D -m 0644 "$WORK/main.conf" "$ROOT$CONF_DEST"
install -D -m 0644 "$SERVICE_SRC" "$ROOT/etc/systemd/system/netechod.service"
install -D -m 0644 "$WORK/watchdog.conf" "$ROOT/etc/systemd/system/netechod.service.d/e2e-watchdog.conf"
install -D -m 0644 "$WORK/probe.py" "$ROOT/usr/local/lib/netechod-e2e/probe.py"
# A sanitizer build in the sandboxed unit: LeakSanitizer needs to stop the
# process's threads the way a debugger does, which the unit's system call
# filter forbids, so its leak check is off there (the rest of ASan stays).
# (grep reads all of ldd's output: with pipefail, grep -q quitting early can
# kill ldd with SIGPIPE and fail the test, and the drop-in went missing.)
if ldd "$NETECHOD_BIN" 2>/dev/null | grep 'libasan' >/dev/null; then
	printf '[Service]\nEnvironment=ASAN_OPTIONS=detect_leaks=0\n' >"$WORK/asan.conf"
	install -D -m 0644 "$WORK/asan.conf" "$ROOT/etc/systemd/system/netechod.service.d/e2e-asan.conf"
fi
# The socket unit waits in /run until the socket phase (installed, it would
# join the plain start as the service's implicit Sockets=).
install -D -m 0644 "$SOCKET_SRC" "$ROOT/run/netechod-e2e/netechod.socket"
install -D -m 0644 "$SERVICE_SRC" "$ROOT/run/netechod-e2e/netechod.service"
X systemctl daemon-reload

# ---- units ----
out=$(X systemd-analyze verify --man=no /run/netechod-e2e/netechod.service /run/netechod-e2e/netechod.socket 2>&1) || true
if [ -z "$out" ]; then pass "systemd-analyze verify: no output"
else fail "systemd-analyze verify" "$(echo "$out" | head -n 3 | paste -sd'|' -)"; fi

# ---- start ----
C0=$(cursor)
if X systemctl start netechod >"$WORK/out" 2>&1 && is_state netechod active; then
	pass "start: ActiveState=active"
else
	fail "start" "$(show netechod ActiveState)/$(show netechod SubState): $(head -c 300 "$WORK/out")"
fi
MAINPID=$(show netechod MainPID)
status=$(show netechod StatusText)
if [ -n "$status" ] && [[ $status == *"$N_MAIN listeners"* ]]; then pass "start: StatusText='$status'"
else fail "start: StatusText mentions $N_MAIN listeners" "'$status'"; fi
if ! is_state netechod active; then
	fail "the remaining checks need the service running; not run"
	finish || exit 1
fi

# ---- probes right after start ----
probe_all() { # label, then "mode port [arg]" items
	local label=$1 p out; shift
	for p in "$@"; do
		# shellcheck disable=SC2086 # "mode port [arg [host]]"
		if out=$(probe $p); then pass "$label: $p"
		else fail "$label: $p" "$out"; fi
	done
}
act_probes() {
	local a proto host port
	for a in "${ACT[@]}"; do read -r proto host port <<<"$a"; echo "$proto $port act $host"; done
}
mapfile -t ACT_PROBES < <(act_probes)
probe_all "echo after start" "tcp 17101" "tcp 17102" "udp 17103" "chat 17104 lobby" "chat 17106 lobby-f" "proxy 17107" "${ACT_PROBES[@]}"

# ---- journal ----
journal_fields() { # prints: closed good_closed opened good_opened plain
	journal_after "$C0" -o verbose | awk '
	function flush() {
		if (msg ~ /connection closed/) {
			closed++
			if (("LISTENER" in f) && ("PEER" in f) && ("REASON" in f) && ("BYTES_IN" in f) &&
			    ("BYTES_OUT" in f) && ("DURATION_USEC" in f) && prio == "6")
				good_closed++
		}
		if (msg ~ /connection opened/) {
			opened++
			if (("LISTENER" in f) && ("PEER" in f) && prio == "6")
				good_opened++
		}
		# a plain stderr line that reached the journal
		if (msg ~ /^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9:.]+Z? (debug|info|notice|warning|error) /)
			plain++
		split("", f); msg = ""; prio = ""
	}
	/^[^ ]/ { flush(); next }
	/^    [A-Z0-9_]+=/ {
		line = substr($0, 5); k = substr(line, 1, index(line, "=") - 1)
		v = substr(line, index(line, "=") + 1); f[k] = 1
		if (k == "MESSAGE") msg = v
		if (k == "PRIORITY") prio = v
	}
	END { flush(); printf "%d %d %d %d %d\n", closed, good_closed, opened, good_opened, plain }'
}
closed_logged() { local c; read -r c _ < <(journal_fields); [ "$c" -ge 4 ]; }
wait_for 5 closed_logged || true
read -r closed good_closed opened good_opened plain < <(journal_fields)
if [ "$closed" -ge 4 ] && [ "$good_closed" = "$closed" ]; then
	pass "journal: $closed close entries with LISTENER= PEER= REASON= BYTES_IN= BYTES_OUT= DURATION_USEC= PRIORITY=6"
else fail "journal: close entries with all fields and PRIORITY=6" "$good_closed of $closed"; fi
if [ "$opened" -ge 4 ] && [ "$good_opened" = "$opened" ]; then
	pass "journal: $opened open entries with LISTENER= PEER= PRIORITY=6"
else fail "journal: open entries with LISTENER= PEER= PRIORITY=6" "$good_opened of $opened"; fi
if [ "$plain" = 0 ]; then pass "journal: no plain stderr lines (structured records only)"
else fail "journal: plain stderr lines in the journal" "$plain"; fi
n=$(journal_after "$C0" -o cat LISTENER=echo-a | grep -c 'connection' || true)
w=$(journal_after "$C0" -o cat -p warning LISTENER=echo-a | grep -c 'connection' || true)
if [ "$n" -ge 2 ] && [ "$w" = 0 ]; then pass "journal: LISTENER=echo-a selects its $n connection entries, none at -p warning"
else fail "journal: LISTENER=echo-a filter" "$n entries, $w at warning"; fi
# Behind a balancer (SPEC 10): PEER= is the header's client, PROXY= the balancer.
# (Counted per field over LISTENER=lb: journalctl's FIELD=VALUE match on
# PEER= missed the open entry in 252.)
proxied() {
	journal_after "$C0" -o verbose LISTENER=lb |
		awk '/^    PEER=192\.0\.2\.7:4711$/ { p++ } /^    PROXY=127\.0\.0\.1:[0-9]+$/ { x++ }
		     END { print (p < x ? p : x) + 0 }'
}
proxied_both() { [ "$(proxied)" -ge 2 ]; }
wait_for 5 proxied_both || true
px=$(proxied)
if [ "$px" -ge 2 ]; then pass "journal: proxied connection entries with PEER=192.0.2.7:4711 and PROXY=127.0.0.1:port ($px)"
else fail "journal: PEER= and PROXY= of a proxied connection" "$px entries"; fi

# ---- reload with a good file ----
install -m 0644 "$WORK/reload.conf" "$ROOT$CONF_DEST"
C1=$(cursor)
if X systemctl reload netechod >"$WORK/out" 2>&1; then pass "reload (good file): systemctl reload succeeds"
else fail "reload (good file): systemctl reload" "$(head -c 300 "$WORK/out")"; fi
# 252: reload may return before RELOADING=1..READY=1 is over.
reloaded() { journal_after "$C1" -o cat | grep 'reloaded' >/dev/null; }
wait_for 10 reloaded || true
if wait_for 10 is_state netechod active && [ "$(show netechod MainPID)" = "$MAINPID" ]; then
	pass "reload (good file): active, MainPID $MAINPID unchanged"
else fail "reload (good file): state" "$(show netechod ActiveState), MainPID $(show netechod MainPID) (was $MAINPID)"; fi
status=$(show netechod StatusText)
if [[ $status == *"$N_RELOAD listeners"* ]] && [[ $status != *failed* ]]; then pass "reload (good file): StatusText='$status'"
else fail "reload (good file): StatusText" "'$status'"; fi
probe_all "after good reload" "tcp 17101" "udp 17103" "chat 17104 lobby" "tcp 17105" "closed 17102"

# ---- reload with a bad file ----
install -m 0644 "$WORK/bad.conf" "$ROOT$CONF_DEST"
C2=$(cursor)
if X systemctl reload netechod >"$WORK/out" 2>&1; then fail "reload (bad file): systemctl reload must fail" "it succeeded"
else pass "reload (bad file): systemctl reload fails"; fi
if wait_for 10 is_state netechod active && [ "$(show netechod MainPID)" = "$MAINPID" ]; then
	pass "reload (bad file): still active, MainPID unchanged"
else fail "reload (bad file): state" "$(show netechod ActiveState), MainPID $(show netechod MainPID)"; fi
if journal_after "$C2" -o cat | grep 'Control process exited.*status=78' >/dev/null; then pass "reload (bad file): ExecReload's netechod -t exited 78"
else fail "reload (bad file): ExecReload's netechod -t exited 78" "$(journal_after "$C2" -o cat | grep -m1 'Control process' || echo 'no control process exit logged')"; fi
if journal_after "$C2" -o cat | grep "netechod.conf:$BAD_LINE" >/dev/null; then pass "reload (bad file): the journal names netechod.conf:$BAD_LINE"
else fail "reload (bad file): the journal names netechod.conf:$BAD_LINE" "$(journal_after "$C2" -o cat | tail -n 3 | paste -sd'|' -)"; fi
probe_all "after bad reload (old config)" "tcp 17101" "udp 17103" "tcp 17105" "closed 17102"
# SIGHUP straight to the daemon with the bad file: STATUS= carries the error.
X systemctl kill -s HUP --kill-who=main netechod >/dev/null 2>&1 || true
status_failed() { [[ $(show netechod StatusText) == *"reload failed"*"netechod.conf:$BAD_LINE"* ]]; }
if wait_for 5 status_failed; then pass "SIGHUP with a bad file: StatusText='$(show netechod StatusText)'"
else fail "SIGHUP with a bad file: StatusText has 'reload failed' and netechod.conf:$BAD_LINE" "'$(show netechod StatusText)'"; fi
if is_state netechod active && [ "$(show netechod MainPID)" = "$MAINPID" ]; then pass "SIGHUP with a bad file: still active"
else fail "SIGHUP with a bad file: state" "$(show netechod ActiveState)"; fi
install -m 0644 "$WORK/reload.conf" "$ROOT$CONF_DEST"
X systemctl reload netechod >/dev/null 2>&1 || true
status_clean() { [[ $(show netechod StatusText) != *failed* ]]; }
if wait_for 5 status_clean; then pass "reload after the fix: StatusText clean again"
else fail "reload after the fix: StatusText" "'$(show netechod StatusText)'"; fi

# ---- watchdog (drop-in WatchdogSec=1s) ----
wd=$(show netechod WatchdogUSec)
ts1=$(show netechod WatchdogTimestampMonotonic)
restarts=$(show netechod NRestarts)
wd_advanced() { [ "$(show netechod WatchdogTimestampMonotonic)" != "$ts1" ]; }
wait_for 3 wd_advanced || true
# Stay alive over more than two watchdog periods.
end=$((SECONDS + 3)); while [ $SECONDS -lt $end ] && is_state netechod active; do sleep 0.2; done
if [ "$wd" = 1s ] && wd_advanced && is_state netechod active && [ "$(show netechod MainPID)" = "$MAINPID" ] \
	&& [ "$(show netechod NRestarts)" = "$restarts" ]; then
	pass "watchdog: WatchdogSec=1s, pings received, alive after 3 s, MainPID unchanged"
else fail "watchdog" "WatchdogUSec=$wd ts $ts1 -> $(show netechod WatchdogTimestampMonotonic), $(show netechod ActiveState), MainPID $(show netechod MainPID), NRestarts $(show netechod NRestarts)"; fi
if X journalctl --no-pager -b -o cat 2>/dev/null | grep 'reception only permitted for main PID' >/dev/null; then
	fail "notify: messages only from the main pid" "$(X journalctl --no-pager -b -o cat | grep -m1 'reception only permitted')"
else pass "notify: no message from a process other than the main pid"; fi

# ---- SIGUSR1 ----
C3=$(cursor)
X systemctl kill -s USR1 --kill-who=main netechod >/dev/null 2>&1 || true
counters() { [ "$(journal_after "$C3" -o verbose | grep -c '^    MESSAGE=.*connections now')" -ge "$N_RELOAD" ]; }
if wait_for 5 counters; then pass "SIGUSR1: one counters entry per listener"
else fail "SIGUSR1: counters entries" "$(journal_after "$C3" -o cat | tail -n 3 | paste -sd'|' -)"; fi

# ---- a killed handler ----
C4=$(cursor)
child=$(X pgrep -P "$MAINPID" | head -n1 || true)
if [ -n "$child" ] && X kill -KILL "$child"; then
	restarted() { journal_after "$C4" -o cat | grep 'restarting' >/dev/null; }
	wait_for 5 restarted || true
	probe_all "after SIGKILL to handler $child" "tcp 17101" "udp 17103" "chat 17104 lobby" "tcp 17105"
	if is_state netechod active && [ "$(show netechod MainPID)" = "$MAINPID" ] \
		&& [ "$(show netechod NRestarts)" = "$restarts" ] && restarted; then
		pass "killed handler: service active, MainPID unchanged, no service restart, restart logged"
	else fail "killed handler" "$(show netechod ActiveState), MainPID $(show netechod MainPID), NRestarts $(show netechod NRestarts)"; fi
else fail "killed handler: no child process of MainPID $MAINPID"; fi

# ---- stop ----
# A client of the fork-model chat listener stays connected through the
# stop. KillMode=mixed sends SIGTERM to the dispatcher alone, so the
# process that carries the connection is still there to deliver SPEC 5.8's
# "* server shutting down" before the close.
X python3 /usr/local/lib/netechod-e2e/probe.py goodbye 17106 e2e-bye >"$WORK/bye" 2>&1 & BYE=$!
bye_joined() { grep -q '^joined$' "$WORK/bye"; }
wait_for 10 bye_joined || true
X systemctl stop netechod >"$WORK/out" 2>&1 || true
res=$(show netechod Result) st=$(show netechod ActiveState) code=$(show netechod ExecMainStatus)
if [ "$st" = inactive ] && [ "$res" = success ] && [ "$code" = 0 ]; then pass "stop: inactive, Result=success, exit status 0"
else fail "stop" "ActiveState=$st Result=$res ExecMainStatus=$code $(head -c 200 "$WORK/out")"; fi
bye_rc=0
wait "$BYE" || bye_rc=$?
if bye_joined && [ "$bye_rc" = 0 ]; then pass "stop: a chat client of the fork listener got '* server shutting down', then the close"
else fail "stop: fork-model chat client goodbye" "probe exit $bye_rc: $(tr '\n' '|' <"$WORK/bye" | head -c 300)"; fi

# ---- socket activation ----
install -m 0644 "$WORK/main.conf" "$ROOT$CONF_DEST"
install -D -m 0644 "$SOCKET_SRC" "$ROOT/etc/systemd/system/netechod.socket"
X systemctl daemon-reload
C6=$(cursor)
if X systemctl start netechod.socket >"$WORK/out" 2>&1 && is_state netechod.socket active && is_state netechod inactive; then
	pass "socket: netechod.socket listening, service not started yet"
else fail "socket: start netechod.socket" "socket $(show netechod.socket ActiveState), service $(show netechod ActiveState): $(head -c 200 "$WORK/out")"; fi
# The first connection starts the service.
probe_all "socket-activated" "${ACT_PROBES[@]}"
if wait_for 10 is_state netechod active; then pass "socket: the service was activated"
else fail "socket: service state" "$(show netechod ActiveState)"; fi
probe_all "socket-activated (self-bound listeners)" "tcp 17101" "tcp 17102" "udp 17103" "chat 17104 lobby"
log=$(journal_after "$C6" -o cat)
if grep -q "received ${#ACT[@]} socket" <<<"$log" && ! grep -qE 'cannot listen|matches no enabled listener' <<<"$log"; then
	pass "socket: netechod took the ${#ACT[@]} passed sockets"
else fail "socket: passed sockets" "$(grep -E 'socket|listen' <<<"$log" | head -n 3 | paste -sd'|' -)"; fi
X systemctl stop netechod.socket netechod >"$WORK/out" 2>&1 || true
res=$(show netechod Result) st=$(show netechod ActiveState)
if [ "$st" = inactive ] && [ "$res" = success ]; then pass "socket: stop, Result=success"
else fail "socket: stop" "ActiveState=$st Result=$res"; fi

finish
