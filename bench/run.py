#!/usr/bin/env python3
"""netechod benchmark: every concurrency model against a bare reference.

    python3 bench/run.py [--build DIR] [--rounds N] [--duration S] [--quick]
                         [--install] [--out FILE] [--json FILE]
                         [--modes LIST] [--models LIST] [--no-tools] [--no-idle]
                         [--chat]

It builds netechod and netecho (meson, in --build DIR) and the bare
reference servers of bench/ref-echo.c, starts one netechod with a TCP and a
UDP echo listener per model (and, for the connectpx mode, a second TCP
listener per model behind the PROXY protocol), one reference server per
model and protocol,
and (when installed) the tools an admin would otherwise use: xinetd's
internal echo, socat, ncat, a python3 asyncio echo and node. It then runs
`netecho bench` against each, netechod and its reference back to back,
for several rounds, and prints markdown tables of medians and spreads.

Everything runs in a private network namespace (the script re-executes
itself under `unshare -n`), on 127.0.0.1 only. The servers run on CPU 0,
the load generator and this script on CPU 1. Every process the script
starts is killed by PID when it ends; every wait is bounded.

With --chat it runs `netecho bench --chat` instead (modes chat100x1,
chat100x100, chat1000x10, chatudp100x1, chat10x10, chatcrowd) against a netechod chat listener
per model and the chat references: bench/ref-chat.c (bare epoll relay),
ngircd (generated config, flood penalties off where it knows
MaxPenaltyTime), `ncat --chat` and bench/select-chat.py; a reference that
is not installed is skipped and noted. --quick adds a chat smoke (a small
rate-limited room on every model, UDP on poll) to the echo smoke; any
delivery error fails it.

Server CPU time is read from a cpuacct cgroup per server when the machine
lets us make one (exited children included), else from /proc/PID/stat of
the server's process tree (utime+stime+cutime+cstime).
"""

import argparse
import datetime
import json
import os
import re
import resource
import selectors
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

NETNS_ENV = "NETECHO_BENCH_NETNS"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HOST = "127.0.0.1"

SERVER_CPU = 0
CLIENT_CPU = 1

# Ports: servers below the ephemeral range, which the script sets to
# EPHEMERAL inside its namespace, so that no client port is ever a
# server port (netechod drops UDP from its own listener ports).
PORT_ND = 15000   # + model index: netechod tcp and udp
PORT_REF = 15100  # + model index: ref-echo tcp and udp
PORT_TOOL = 15200  # + tool index
PORT_PX = 15300   # + model index: netechod tcp with proxy_protocol (connectpx)
PORT_METRICS = 15400  # the metrics listener of mode scrape
EPHEMERAL = "20000 65000"

MODELS = ["fork", "thread", "select", "poll", "epoll", "epoll2"]
REF_OF = {"fork": "fork", "thread": "thread", "select": "select", "poll": "poll",
          "epoll": "epoll", "epoll2": "epoll"}
TARGET_MODELS = ["fork", "thread", "select", "poll", "epoll"]  # epoll2 is informational

# netechod listener settings per model. max_clients as large as the model
# allows; UDP workers as many as the reference has (fork: 3 processes,
# thread: 2 threads on one socket).
SELECT_MAX = 960

# connectpx: the settings added to the second TCP listener of each model.
PROXY_EXTRA = ' proxy_protocol = true; proxy_from = [ "127.0.0.0/8" ];'


class Mode:
    def __init__(self, key, title, args, udp=False, tools=False, proxy=False, crowd=False,
                 skip=()):
        self.key, self.title, self.args, self.udp, self.tools = key, title, args, udp, tools
        self.proxy = proxy  # connectpx: runs its PX_VARIANTS instead of itself
        # chatcrowd: the servers that hold 10000 members, and the server's
        # peak memory sampled during the run
        self.crowd = crowd
        self.skip = skip  # models and references that cannot hold the mode's members


MODES = [
    Mode("pp64x1", "ping-pong 64 B, 1 connection", ["-c", "1", "-s", "64"]),
    Mode("pp64x50", "ping-pong 64 B, 50 connections", ["-c", "50", "-s", "64"], tools=True),
    Mode("pp64x500", "ping-pong 64 B, 500 connections", ["-c", "500", "-s", "64"]),
    Mode("stream16k", "16 KiB stream, 4 connections, pipeline 2",
         ["-c", "4", "-s", "16384", "-P", "2"]),
    Mode("connect", "connect rate, 8 concurrent (connect, 64 B, close)",
         ["--connect", "-c", "8", "-s", "64"], tools=True),
    Mode("udp64x50", "UDP 64 B, 50 senders", ["-u", "-c", "50", "-s", "64"], udp=True,
         tools=True),
    Mode("connectpx", "connect rate with a PROXY protocol header, 8 concurrent "
         "(connect, header, 64 B, close)", ["--connect", "-c", "8", "-s", "64"], proxy=True),
]
MODE_BY_KEY = {m.key: m for m in MODES}
# connectpx measures, per model and round, in an order that rotates: the
# plain connect rate on the model's usual TCP listener, and the rate with a
# v1 and a v2 header on its proxy_protocol listener (same settings
# otherwise). Results are kept under these keys.
PX_VARIANTS = [
    ("none", Mode("connectpx-none", "connect rate, no header", MODE_BY_KEY["connectpx"].args)),
    ("v1", Mode("connectpx-v1", "connect rate, PROXY v1",
                MODE_BY_KEY["connectpx"].args + ["--proxy", "v1"])),
    ("v2", Mode("connectpx-v2", "connect rate, PROXY v2",
                MODE_BY_KEY["connectpx"].args + ["--proxy", "v2"])),
]
# Mode scrape (alone): pp64x50 on each model's echo listener with and
# without a client scraping the metrics listener 20 times a second; the
# ratio of the two rates must be >= SCRAPE_MIN_RATIO.
SCRAPE_HZ = 20
SCRAPE_MIN_RATIO = 0.95
QUICK_MODES = ["pp64x50", "connect", "udp64x50"]

IDLE_N = {"fork": 1000, "select": 950, "thread": 10000, "poll": 10000, "epoll": 10000,
          "epoll2": 10000}
QUICK_IDLE_N = 200

CLK_TCK = os.sysconf("SC_CLK_TCK")


T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- /proc

def read(path, default=None):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def children(pid):
    out = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        s = read(f"/proc/{pid}/task/{tid}/children", "")
        out.extend(int(x) for x in s.split())
    return out


def tree(pid):
    """pid and all its descendants that are alive now."""
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in seen or not os.path.exists(f"/proc/{p}"):
            continue
        seen.append(p)
        todo.extend(children(p))
    return seen


def proc_cpu_ticks(pid):
    s = read(f"/proc/{pid}/stat")
    if not s:
        return 0
    f = s[s.rfind(")") + 2:].split()
    # fields after the comm: state=0 ... utime=11 stime=12 cutime=13 cstime=14
    return int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])


def tree_cpu_ns(pid):
    return sum(proc_cpu_ticks(p) for p in tree(pid)) * 1_000_000_000 // CLK_TCK


def status_kb(pid, key):
    s = read(f"/proc/{pid}/status", "")
    m = re.search(rf"^{key}:\s+(\d+) kB", s, re.M)
    return int(m.group(1)) if m else 0


def pss_kb(pid):
    s = read(f"/proc/{pid}/smaps_rollup", "")
    m = re.search(r"^Pss:\s+(\d+) kB", s, re.M)
    return int(m.group(1)) if m else None


def tree_mem_kb(pid):
    """(sum of VmRSS, sum of Pss or None) over the process tree."""
    rss, pss, have_pss = 0, 0, True
    for p in tree(pid):
        rss += status_kb(p, "VmRSS")
        v = pss_kb(p)
        if v is None:
            have_pss = False
        else:
            pss += v
    return rss, (pss if have_pss else None)


def listen_inode(proto, port):
    files = ["/proc/net/tcp", "/proc/net/tcp6"] if proto == "tcp" else \
        ["/proc/net/udp", "/proc/net/udp6"]
    state = "0A" if proto == "tcp" else "07"
    for fn in files:
        for line in read(fn, "").splitlines()[1:]:
            f = line.split()
            if len(f) < 10 or f[3] != state:
                continue
            if int(f[1].rsplit(":", 1)[1], 16) == port:
                return int(f[9])
    return None


def socket_inodes(pid):
    out = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(int(link[8:-1]))
    return out


# ---------------------------------------------------------------- cgroups

class CpuAcct:
    """One cpuacct cgroup per server: counts exited children too (the
    reference fork server ignores SIGCHLD, so its children's time never
    reaches cutime). Falls back to /proc when no cgroup can be made."""

    def __init__(self):
        self.root = None
        self.kind = None
        self.dirs = []
        cands = [("v1", "/sys/fs/cgroup/cpuacct", "cpuacct.usage"),
                 ("v2", "/sys/fs/cgroup", "cpu.stat"),
                 ("v2", "/sys/fs/cgroup/unified", "cpu.stat")]
        for kind, base, probe in cands:
            if not os.path.isdir(base) or not os.access(base, os.W_OK):
                continue
            if kind == "v2" and not os.path.exists(os.path.join(base, "cgroup.procs")):
                continue
            path = os.path.join(base, f"netecho-bench-{os.getpid()}")
            try:
                os.mkdir(path)
            except OSError:
                continue
            if os.path.exists(os.path.join(path, probe)):
                self.root, self.kind = path, kind
                break
            try:
                os.rmdir(path)
            except OSError:
                pass
        self.describe = (f"cpuacct cgroup ({self.kind})" if self.root else
                         "/proc/PID/stat of the process tree (utime+stime+cutime+cstime)")

    def make(self, name):
        if not self.root:
            return None
        path = os.path.join(self.root, name)
        try:
            os.mkdir(path)
        except OSError:
            return None
        self.dirs.append(path)
        return path

    @staticmethod
    def add(cg, pid):
        if not cg:
            return False
        try:
            with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                f.write(str(pid))
            return True
        except OSError:
            return False

    def usage_ns(self, cg):
        if self.kind == "v1":
            return int(read(os.path.join(cg, "cpuacct.usage"), "0").strip() or 0)
        s = read(os.path.join(cg, "cpu.stat"), "")
        m = re.search(r"^usage_usec (\d+)", s, re.M)
        return int(m.group(1)) * 1000 if m else 0

    def cleanup(self):
        if not self.root:
            return
        for path in self.dirs[::-1] + [self.root]:
            for _ in range(50):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)


# ---------------------------------------------------------------- processes

class Procs:
    """Every process we start, to be killed by PID at the end."""

    def __init__(self):
        self.procs = []

    def start(self, argv, cpu=None, cgroup=None, **kw):
        def pre():
            if cpu is not None:
                try:
                    os.sched_setaffinity(0, {cpu})
                except OSError:
                    pass
            CpuAcct.add(cgroup, os.getpid())
        p = subprocess.Popen(argv, preexec_fn=pre, start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def stop(self, p, grace=3.0):
        if p.poll() is not None:
            return
        pids = tree(p.pid)
        try:
            p.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        for pid in [p.pid] + tree(p.pid) + pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        # descendants that outlived their parent: reparented, kill by PID
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def stop_all(self):
        for p in reversed(self.procs):
            self.stop(p, grace=2.0)


def wait_line(p, want, timeout):
    """Wait (bounded) for a line containing want on p.stdout."""
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    end = time.monotonic() + timeout
    buf = b""
    try:
        while time.monotonic() < end:
            if not sel.select(max(0.0, end - time.monotonic())):
                continue
            chunk = os.read(p.stdout.fileno(), 4096)
            if not chunk:
                return False
            buf += chunk
            if want.encode() in buf:
                return True
        return False
    finally:
        sel.close()


def tcp_accepts(port, timeout=0.5):
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------- targets

class Target:
    """One thing to benchmark: a server on a port with a process tree."""

    def __init__(self, label, kind, model, proto, port, root_pid, cgroup, acct):
        self.label, self.kind, self.model, self.proto = label, kind, model, proto
        self.port, self.root_pid, self.cgroup, self.acct = port, root_pid, cgroup, acct
        self.resolve = None  # callable giving the current root pid (netechod)

    def root(self):
        return self.resolve() if self.resolve else self.root_pid

    def cpu_ns(self):
        if self.cgroup:
            return self.acct.usage_ns(self.cgroup)
        pid = self.root()
        return tree_cpu_ns(pid) if pid else 0


class Context:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="netecho-bench-")
        self.procs = Procs()
        self.acct = CpuAcct()
        self.notes = []
        self.netechod = args.netechod or os.path.join(args.build, "src", "netechod")
        self.netecho = os.path.join(args.build, "src", "netecho", "netecho")
        self.ref_echo = None
        self.pin = len(os.sched_getaffinity(0)) >= 2 and (os.cpu_count() or 1) >= 2
        self.nd_proc = None
        self.budget_noted = False
        self.load_start = " ".join(read("/proc/loadavg", "? ? ?").split()[:3])

    def client_argv(self, argv):
        return (["taskset", "-c", str(CLIENT_CPU)] + argv) if self.pin and shutil.which(
            "taskset") else argv

    def server_cpu(self):
        return SERVER_CPU if self.pin else None

    def cleanup(self):
        self.procs.stop_all()
        self.acct.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)


def conf_listener(name, proto, port, model, service, extra):
    """One listener group of a netechod config; extra: more settings, each
    with a leading space."""
    return (f'  {{ name = "{name}"; protocol = "{proto}"; '
            f'address = "{HOST}"; port = {port}; model = "{model}"; '
            f'service = "{service}";{extra} }}')


def write_netechod_config(ctx, filename, items):
    """ctx.tmp/filename: the bench's global settings, and items (from
    conf_listener()) as the listeners. Returns the path."""
    out = ['log_level = "notice";', "shutdown_timeout = 1;",
           "defaults = { max_clients = 20000; idle_timeout = 0; backlog = 1024; };",
           "listeners = (", ",\n".join(items), ");"]
    path = os.path.join(ctx.tmp, filename)
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    return path


def netechod_config(ctx, models, proxy=False, metrics=False):
    items = []
    for i, m in enumerate(models):
        model = "epoll" if m == "epoll2" else m
        extra_t, extra_u = "", ""
        if m == "select":
            extra_t = f" max_clients = {SELECT_MAX};"
            extra_u = f" max_clients = {SELECT_MAX};"
        if m == "epoll2":
            extra_t = extra_u = " workers = 2;"
        if m == "fork":
            extra_u = " workers = 3;"
        if m == "thread":
            extra_u = " workers = 2;"
        port = PORT_ND + MODELS.index(m)
        lst = [("tcp", "tcp", port, extra_t), ("udp", "udp", port, extra_u)]
        if proxy:
            lst.append(("tcppx", "tcp", PORT_PX + MODELS.index(m), extra_t + PROXY_EXTRA))
        for name, proto, p, extra in lst:
            items.append(conf_listener(f"b-{m}-{name}", proto, p, model, "echo", extra))
    if metrics:
        items.append(conf_listener("b-metrics", "tcp", PORT_METRICS, "poll", "metrics",
                                   " max_clients = 16; idle_timeout = 60;"))
    return write_netechod_config(ctx, "netechod.conf", items)


def echo_ok(ctx, port, udp=False, timeout=2, proxy=None):
    argv = [ctx.netecho, "echo"] + (["-u"] if udp else []) + \
        (["--proxy", proxy] if proxy else []) + ["-t", str(timeout), HOST, str(port)]
    try:
        r = subprocess.run(argv, capture_output=True, timeout=timeout + 5)
    except subprocess.TimeoutExpired:
        return False
    return r.returncode == 0


def launch_netechod(ctx, conf, what, log_path):
    """Check conf with netechod -t (what names it in the error), then start
    netechod on it with its output in log_path, as ctx.nd_proc."""
    r = subprocess.run([ctx.netechod, "-t", "-c", conf], capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        raise SystemExit(f"netechod rejected the {what} config:\n{r.stdout}{r.stderr}")
    logf = open(log_path, "w")
    p = ctx.procs.start([ctx.netechod, "-c", conf], cpu=ctx.server_cpu(),
                        stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
    logf.close()
    ctx.nd_proc = p
    return p


def handler_resolver(p, proto, port):
    """A function that finds the child of netechod p holding the listening
    socket proto/port (its handler), or None."""
    def f():
        ino = listen_inode(proto, port)
        if ino is None:
            return None
        for c in children(p.pid):
            if ino in socket_inodes(c):
                return c
        return None
    return f


def netechod_target(ctx, m, proto, port, pid, resolve, cg_name):
    """The Target of netechod model m's handler pid, in a cgroup of its own
    (cg_name) when one can be made and the whole process tree moved."""
    cg = ctx.acct.make(cg_name)
    if cg and not all(CpuAcct.add(cg, q) for q in tree(pid)):
        cg = None
    t = Target(f"netechod/{m}", "netechod", m, proto, port, pid, cg, ctx.acct)
    t.resolve = resolve
    return t


def start_netechod(ctx, models, proxy=False, metrics=False):
    """Targets by (model, "tcp" | "udp" | "tcppx"); "tcppx" (the listener
    with proxy_protocol) only with proxy."""
    conf = netechod_config(ctx, models, proxy, metrics)
    p = launch_netechod(ctx, conf, "bench", os.path.join(ctx.tmp, "netechod.log"))
    targets = {}

    def where(m, kind):
        """(protocol, port) of a listener kind"""
        if kind == "tcppx":
            return "tcp", PORT_PX + MODELS.index(m)
        return kind, PORT_ND + MODELS.index(m)

    end = time.monotonic() + 20
    pending = [(m, kind) for m in models
               for kind in ("tcp", "udp") + (("tcppx",) if proxy else ())]
    found = {}
    while pending and time.monotonic() < end:
        if p.poll() is not None:
            raise SystemExit("netechod exited at start-up:\n" +
                             read(os.path.join(ctx.tmp, "netechod.log"), ""))
        for m, kind in list(pending):
            proto, port = where(m, kind)
            pid = handler_resolver(p, proto, port)()
            if pid and (echo_ok(ctx, port, udp=proto == "udp", timeout=1,
                                proxy="v1" if kind == "tcppx" else None)):
                found[(m, kind)] = pid
                pending.remove((m, kind))
        if pending:
            time.sleep(0.1)
    if pending:
        raise SystemExit(f"netechod listeners not ready after 20 s: {pending}\n" +
                         read(os.path.join(ctx.tmp, "netechod.log"), ""))
    for (m, kind), pid in found.items():
        proto, port = where(m, kind)
        targets[(m, kind)] = netechod_target(ctx, m, proto, port, pid,
                                             handler_resolver(p, proto, port), f"nd-{m}-{kind}")
    return targets


def build_ref(ctx):
    meson_ref = os.path.join(ctx.args.build, "bench", "ref-echo")
    if os.access(meson_ref, os.X_OK):
        ctx.ref_echo = meson_ref
        return
    out = os.path.join(ctx.tmp, "ref-echo")
    cc = os.environ.get("CC", "cc")
    # -z now like the meson build: with lazy binding every forked child
    # resolves its symbols again, which costs the bare fork server 25 %.
    r = subprocess.run([cc, "-O2", "-D_GNU_SOURCE", "-pthread", "-Wl,-z,relro,-z,now", "-o", out,
                        os.path.join(HERE, "ref-echo.c")], capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0:
        raise SystemExit(f"cannot compile bench/ref-echo.c:\n{r.stderr}")
    ctx.ref_echo = out
    ctx.notes.append("ref-echo compiled by the script with `cc -O2 -Wl,-z,now` "
                     "(no DIR/bench/ref-echo from meson).")


def start_refs(ctx, models):
    targets = {}
    for m in sorted(set(REF_OF[x] for x in models), key=MODELS.index):
        port = PORT_REF + MODELS.index(m)
        for proto in ("tcp", "udp"):
            cg = ctx.acct.make(f"ref-{m}-{proto}")
            p = ctx.procs.start([ctx.ref_echo, m, proto, str(port)], cpu=ctx.server_cpu(),
                                cgroup=cg, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
            if not wait_line(p, "ready", 10):
                raise SystemExit(f"ref-echo {m} {proto} did not start")
            if cg and str(p.pid) not in read(os.path.join(cg, "cgroup.procs"), "").split():
                cg = None
            targets[(m, proto)] = Target(f"ref/{m}", "ref", m, proto, port, p.pid, cg,
                                         ctx.acct)
    return targets


# ---------------------------------------------------------------- tools

PY_ASYNCIO = r"""
import asyncio, sys
class Echo(asyncio.Protocol):
    def connection_made(self, t):
        self.t = t
    def data_received(self, d):
        self.t.write(d)
async def main():
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(Echo, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    print("ready", flush=True)
    await srv.serve_forever()
asyncio.run(main())
"""

NODE_ECHO = r"""
const net = require('net');
const srv = net.createServer({noDelay: true}, s => { s.on('error', () => {}); s.pipe(s); });
srv.listen({port: +process.argv[1], host: '127.0.0.1', backlog: 1024},
           () => console.log('ready'));
"""


def xinetd_conf(ctx, port):
    logf = os.path.join(ctx.tmp, "xinetd.log")
    return f"""defaults
{{
	instances	= UNLIMITED
	per_source	= UNLIMITED
	cps		= 1000000 1
	log_type	= FILE {logf}
	log_on_success	=
	log_on_failure	=
}}

service echo
{{
	id		= bench-echo-stream
	type		= INTERNAL UNLISTED
	socket_type	= stream
	protocol	= tcp
	port		= {port}
	bind		= {HOST}
	wait		= no
	user		= root
	flags		= NODELAY
}}

service echo
{{
	id		= bench-echo-dgram
	type		= INTERNAL UNLISTED
	socket_type	= dgram
	protocol	= udp
	port		= {port}
	bind		= {HOST}
	wait		= yes
	user		= root
}}
"""


def tool_specs(ctx):
    """(name, argv builder(port) -> (argv, readiness line or None), protos, what)"""
    specs = []
    if shutil.which("xinetd"):
        def xi(port):
            conf = os.path.join(ctx.tmp, "xinetd.conf")
            with open(conf, "w") as f:
                f.write(xinetd_conf(ctx, port))
            return [shutil.which("xinetd"), "-dontfork", "-f", conf, "-pidfile",
                    os.path.join(ctx.tmp, "xinetd.pid")], None
        specs.append(("xinetd", xi, ("tcp", "udp"),
                      "xinetd internal echo (stream forks per connection; dgram in-process)"))
    if shutil.which("socat"):
        specs.append(("socat", lambda port: ([
            shutil.which("socat"), f"TCP-LISTEN:{port},bind={HOST},fork,reuseaddr,"
            "backlog=1024,nodelay", "PIPE"], None), ("tcp",),
            "socat TCP-LISTEN:P,fork PIPE (fork per connection)"))
    if shutil.which("ncat"):
        specs.append(("ncat", lambda port: ([
            shutil.which("ncat"), "-l", HOST, str(port), "-k", "-m", "10000", "--exec",
            "/bin/cat"], None), ("tcp",), "ncat -l -k --exec /bin/cat (fork+exec per connection)"))
    specs.append(("python-asyncio", lambda port: ([
        sys.executable, "-c", PY_ASYNCIO, str(port)], "ready"), ("tcp",),
        f"python3 {sys.version.split()[0]} asyncio Protocol echo, one loop"))
    if shutil.which("node"):
        specs.append(("node", lambda port: ([shutil.which("node"), "-e", NODE_ECHO,
                                             str(port)], "ready"), ("tcp",),
                      "node net.createServer(s => s.pipe(s))"))
    return specs


def start_tools(ctx):
    targets, desc = {}, {}
    for i, (name, builder, protos, what) in enumerate(tool_specs(ctx)):
        port = PORT_TOOL + i
        argv, ready = builder(port)
        cg = ctx.acct.make(f"tool-{name}")
        p = ctx.procs.start(argv, cpu=ctx.server_cpu(), cgroup=cg, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE if ready else subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
        ok = wait_line(p, ready, 10) if ready else True
        end = time.monotonic() + 10
        while ok and time.monotonic() < end and not tcp_accepts(port):
            if p.poll() is not None:
                ok = False
                break
            time.sleep(0.1)
        ok = ok and echo_ok(ctx, port, timeout=3)
        if ok and "udp" in protos:
            ok_u = echo_ok(ctx, port, udp=True, timeout=3)
            if not ok_u:
                protos = ("tcp",)
                ctx.notes.append(f"{name}: UDP echo did not answer; UDP not measured.")
        if not ok:
            ctx.notes.append(f"{name}: did not start or echo; not measured.")
            ctx.procs.stop(p)
            continue
        for proto in protos:
            targets[(name, proto)] = Target(name, "tool", name, proto, port, p.pid, cg,
                                            ctx.acct)
        desc[name] = what
    return targets, desc


# ---------------------------------------------------------------- measurements

def parse_kv(line):
    return dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)


def cpu_stat():
    """Per CPU: (user+nice+system+irq+softirq, steal) in ns, from /proc/stat."""
    out = {}
    for line in read("/proc/stat", "").splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            f = line.split()
            v = [int(x) for x in f[1:9]] + [0] * 8
            out[int(f[0][3:])] = ((v[0] + v[1] + v[2] + v[5] + v[6]) * 1_000_000_000 //
                                  CLK_TCK,
                                  v[7] * 1_000_000_000 // CLK_TCK)
    return out


def own_cpu_ns():
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    me = resource.getrusage(resource.RUSAGE_SELF)
    return int((ch.ru_utime + ch.ru_stime + me.ru_utime + me.ru_stime) * 1e9)


def foreign_pct(ctx, seconds=0.3):
    """CPU% (average over the CPUs) used by processes that are not ours, sampled now."""
    a, o0 = cpu_stat(), own_cpu_ns()
    time.sleep(seconds)
    b, o1 = cpu_stat(), own_cpu_ns()
    busy = sum(b[c][0] - a[c][0] for c in a if c in b) - (o1 - o0)
    return max(0.0, 100.0 * busy / (seconds * 1e9) / max(1, len(a)))


def run_bench(ctx, t, mode, duration):
    """Run once; when other processes on the machine took more than
    --max-foreign % of a CPU meanwhile, try again (--retries) and keep the
    least disturbed run."""
    best = None
    over = ctx.args.budget and time.monotonic() - T0 > ctx.args.budget * 60
    if over and not ctx.budget_noted:
        ctx.budget_noted = True
        ctx.notes.append(f"--budget {ctx.args.budget:g} min reached after "
                         f"{(time.monotonic() - T0) / 60:.1f} min: no more waiting for a "
                         "quiet machine or repeating disturbed runs from then on.")
    for attempt in range(1 + (0 if over else max(0, ctx.args.retries))):
        # wait (bounded) for the machine to be quiet before starting
        end = time.monotonic() + (0 if over else ctx.args.quiet_wait)
        while ctx.pin and time.monotonic() < end and \
                foreign_pct(ctx) > ctx.args.max_foreign:
            time.sleep(0.5)
        r = run_bench_once(ctx, t, mode, duration)
        r["attempts"] = attempt + 1
        if best is None or (r.get("foreign_pct") or 0) < (best.get("foreign_pct") or 0):
            best = r
        if r.get("errors") or not ctx.pin or (r.get("foreign_pct") or 0) <= \
                ctx.args.max_foreign:
            break
    best["attempts"] = r["attempts"]
    best["disturbed"] = bool(ctx.pin and (best.get("foreign_pct") or 0) >
                             ctx.args.max_foreign)
    return best


def run_bench_once(ctx, t, mode, duration):
    if getattr(t, "before", None):
        t.before()
    argv = ctx.client_argv([ctx.netecho, "bench"] + mode.args + getattr(t, "extra", []) +
                           [HOST, str(t.port), "-d", str(duration)])
    pid0 = t.root()
    c0 = t.cpu_ns()
    s0, o0 = cpu_stat(), own_cpu_ns()
    w0 = time.monotonic()
    peak_kb = None
    try:
        if mode.crowd:
            out, err, rc, peak_kb = run_sampling_memory(argv, t, duration + 90)
        else:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
            out, err, rc = r.stdout, r.stderr, r.returncode
    except subprocess.TimeoutExpired:
        out, err, rc = "", "netecho bench did not finish in time (killed)", -1
    wall = time.monotonic() - w0
    s1, o1 = cpu_stat(), own_cpu_ns()
    c1 = t.cpu_ns()
    pid1 = t.root()
    lines = [ln for ln in out.splitlines() if ln.startswith("bench ")]
    res = {"server": t.label, "proto": t.proto, "mode": mode.key, "rc": rc, "wall": wall}
    if ctx.pin and SERVER_CPU in s0 and CLIENT_CPU in s0:
        # what ran on the two CPUs besides the server (CPU 0) and the client
        # and this script (CPU 1): other people's work, or kernel threads
        f0 = (s1[SERVER_CPU][0] - s0[SERVER_CPU][0]) - (c1 - c0)
        f1 = (s1[CLIENT_CPU][0] - s0[CLIENT_CPU][0]) - (o1 - o0)
        steal = sum(s1[c][1] - s0[c][1] for c in s0 if c in s1)
        res["foreign_server_cpu_pct"] = max(0.0, 100.0 * f0 / 1e9 / wall)
        res["foreign_client_cpu_pct"] = max(0.0, 100.0 * f1 / 1e9 / wall)
        res["foreign_pct"] = max(res["foreign_server_cpu_pct"], res["foreign_client_cpu_pct"])
        res["steal_pct"] = 100.0 * steal / 1e9 / wall
    if not lines:
        res.update(errors=1, msgs=0, msgs_per_s=0.0, p99_us=None, cpu_us_per_msg=None,
                   first_error=(err.strip().splitlines() or ["no summary line"])[-1])
        return res
    kv = parse_kv(lines[-1])
    if kv.get("mode") == "chat":
        # chat: a message is a delivery, a line received by one member
        kv["msgs"], kv["msgs_per_s"] = kv.get("deliveries", 0), kv.get("deliveries_per_s", 0)
    msgs = int(kv.get("msgs", 0))
    res.update(msgs=msgs, msgs_per_s=float(kv.get("msgs_per_s", 0)),
               connects_per_s=float(kv.get("connects_per_s", 0)),
               p50_us=float(kv.get("p50_us", 0)), p99_us=float(kv.get("p99_us", 0)),
               p999_us=float(kv.get("p999_us", 0)), errors=int(kv.get("errors", 0)),
               lost=int(kv.get("lost", 0)), mb_per_s=float(kv.get("mb_per_s", 0)),
               cpu_ns=c1 - c0, busy_pct=100.0 * (c1 - c0) / 1e9 / wall if wall else None,
               cpu_us_per_msg=((c1 - c0) / 1000.0 / msgs) if msgs else None)
    if res["errors"]:
        res["first_error"] = next((ln for ln in err.splitlines() if "first error" in ln),
                                  err.strip()[-200:])
    if peak_kb is not None:
        # everything the server holds above what it held when it had
        # started, at the peak of the run, over the members: an upper bound
        # of one member's cost
        members = int(kv.get("members", 0) or 0)
        res["peak_rss_kb"] = peak_kb
        res["rss0_kb"] = getattr(t, "rss0_kb", 0)
        if members:
            res["kb_per_member"] = (peak_kb - res["rss0_kb"]) / members
    if t.kind == "netechod" and pid0 != pid1:
        res["errors"] += 1
        res["first_error"] = f"handler process changed during the run ({pid0} -> {pid1})"
    return res


def run_sampling_memory(argv, t, timeout):
    """Run argv to its end like subprocess.run, reading the server's RSS
    (its process tree) every 0.2 s meanwhile: (stdout, stderr, rc, peak
    KiB)."""
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        p = subprocess.Popen(argv, stdout=fo, stderr=fe, text=True)
        peak, end = 0, time.monotonic() + timeout
        while p.poll() is None:
            if time.monotonic() > end:
                p.kill()
                p.wait()
                raise subprocess.TimeoutExpired(argv, timeout)
            root = t.root()
            if root:
                peak = max(peak, tree_mem_kb(root)[0])
            time.sleep(0.2)
        fo.seek(0)
        fe.seek(0)
        return fo.read(), fe.read(), p.returncode, peak


def fresh_echo_ms(ctx, port, n=5):
    vals, fails = [], 0
    for _ in range(n):
        try:
            r = subprocess.run(ctx.client_argv([ctx.netecho, "echo", "-t", "5", HOST,
                                                str(port)]),
                               capture_output=True, text=True, timeout=15)
            m = re.search(r"time=([0-9.]+)s", r.stdout)
            if r.returncode == 0 and m:
                vals.append(float(m.group(1)) * 1000)
            else:
                fails += 1
        except subprocess.TimeoutExpired:
            fails += 1
    return (statistics.median(vals) if vals else None), fails


def open_idle(port, n, deadline, batch=500):
    """Open up to n TCP connections, each proven served by one echoed byte.
    Returns (list of sockets held, note)."""
    held = []
    sel = selectors.DefaultSelector()
    note = ""
    try:
        while len(held) < n and time.monotonic() < deadline:
            want = min(batch, n - len(held))
            pend = {}
            for _ in range(want):
                try:
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                except OSError as e:
                    note = f"socket(): {e}"
                    break
                s.setblocking(False)
                s.connect_ex((HOST, port))
                pend[s.fileno()] = s
                sel.register(s, selectors.EVENT_WRITE)
            if not pend:
                break
            ok = []
            bend = min(deadline, time.monotonic() + 15)
            # connected?
            left = dict(pend)
            while left and time.monotonic() < bend:
                for key, _ in sel.select(0.2):
                    s = key.fileobj
                    sel.unregister(s)
                    del left[s.fileno()]
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                        try:
                            s.send(b"x")
                            sel.register(s, selectors.EVENT_READ)
                            ok.append(s)
                            continue
                        except OSError:
                            pass
                    s.close()
            for s in left.values():
                sel.unregister(s)
                s.close()
            # echoed?
            waiting = {s.fileno(): s for s in ok}
            while waiting and time.monotonic() < bend:
                for key, _ in sel.select(0.2):
                    s = key.fileobj
                    sel.unregister(s)
                    del waiting[s.fileno()]
                    try:
                        d = s.recv(16)
                    except OSError:
                        d = b""
                    if d == b"x":
                        held.append(s)
                    else:
                        s.close()
            for s in waiting.values():
                sel.unregister(s)
                s.close()
            if len(held) == 0 or len(ok) < want // 2:
                note = note or f"server stopped taking connections at {len(held)}"
                break
    finally:
        sel.close()
    if time.monotonic() >= deadline and len(held) < n:
        note = note or "deadline reached"
    return held, note


def idle_test(ctx, t, n, probes=(3, 5)):
    pid = t.root()
    base_tree = len(tree(pid))
    fresh0, _ = fresh_echo_ms(ctx, t.port, probes[0])
    time.sleep(0.3)
    rss0, pss0 = tree_mem_kb(pid)
    socks, note = open_idle(t.port, n, time.monotonic() + 120)
    time.sleep(0.5)
    rss1, pss1 = tree_mem_kb(t.root())
    fresh1, fails = fresh_echo_ms(ctx, t.port, probes[1])
    # still all open? none may have been closed by the server meanwhile
    closed = 0
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    for key, _ in sel.select(0.2):
        closed += 1
    sel.close()
    held = len(socks) - closed
    for s in socks:
        s.close()
    # let the server release them (fork: children exit), bounded
    end = time.monotonic() + 20
    while time.monotonic() < end and len(tree(t.root() or pid)) > base_tree + 1:
        time.sleep(0.2)
    time.sleep(0.5)
    res = {"server": t.label, "asked": n, "held": held, "note": note,
           "rss_kb_before": rss0, "rss_kb_after": rss1,
           "rss_kib_per_conn": (rss1 - rss0) / held if held else None,
           "pss_kib_per_conn": ((pss1 - pss0) / held) if held and pss0 is not None
           and pss1 is not None else None,
           "fresh_ms_before": fresh0, "fresh_ms_idle": fresh1, "fresh_fails": fails}
    return res


# ---------------------------------------------------------------- report

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt_n(x):
    if x is None:
        return "–"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_pct(x):
    return "–" if x is None else f"{x:.0f}"


def fmt_spread(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    m = statistics.median(xs)
    if len(xs) == 1:
        return fmt_n(m)
    return f"{fmt_n(m)} ({fmt_n(min(xs))}–{fmt_n(max(xs))})"


def fmt_ratio(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    m = statistics.median(xs)
    if len(xs) == 1:
        return f"{m:.2f}"
    return f"{m:.2f} ({min(xs):.2f}–{max(xs):.2f})"


def paired(a, b, key, rounds):
    """Per-round ratio a/b of key."""
    out = []
    for r in range(rounds):
        x = a.get(r, {}).get(key) if a else None
        y = b.get(r, {}).get(key) if b else None
        if x is not None and y:
            out.append(x / y)
    return out


def series(d, key):
    return [v.get(key) for _, v in sorted(d.items())] if d else []


class Report:
    def __init__(self, ctx, models, modes, rounds):
        self.ctx, self.models, self.modes, self.rounds = ctx, models, modes, rounds
        self.res = {}   # (label, proto-mode key) -> {round: result}
        self.idle = {}  # label -> result
        self.tool_desc = {}

    def add(self, rnd, t, mode, r):
        self.res.setdefault((t.label, mode.key), {})[rnd] = r

    def get(self, label, mode_key):
        return self.res.get((label, mode_key), {})

    def all_results(self):
        for (label, mk), d in self.res.items():
            for rnd, r in d.items():
                yield label, mk, rnd, r

    def mode_table(self, mode):
        L = []
        L.append(f"### {mode.title} (`netecho bench {' '.join(mode.args)}`)")
        L.append("")
        L.append("| model | netechod msgs/s | ref msgs/s | vs own ref | vs bare epoll | "
                 "p99 µs netechod / ref | CPU µs/msg netechod | CPU µs/msg ref | CPU ratio | "
                 "server busy % netechod / ref |" + (" lost netechod / ref |" if mode.udp
                                                      else ""))
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" +
                 ("---:|" if mode.udp else ""))
        bare = self.get("ref/epoll", mode.key)
        for m in self.models:
            nd = self.get(f"netechod/{m}", mode.key)
            ref = self.get(f"ref/{REF_OF[m]}", mode.key)
            if not nd:
                continue
            name = m if m != "epoll2" else "epoll workers=2"
            refname = "" if REF_OF[m] == m else f" (ref {REF_OF[m]})"
            L.append("| " + " | ".join([
                name + refname,
                fmt_spread(series(nd, "msgs_per_s")),
                fmt_spread(series(ref, "msgs_per_s")),
                fmt_ratio(paired(nd, ref, "msgs_per_s", self.rounds)),
                fmt_ratio(paired(nd, bare, "msgs_per_s", self.rounds)),
                f"{fmt_n(med(series(nd, 'p99_us')))} / {fmt_n(med(series(ref, 'p99_us')))}",
                fmt_spread(series(nd, "cpu_us_per_msg")),
                fmt_spread(series(ref, "cpu_us_per_msg")),
                fmt_ratio(paired(nd, ref, "cpu_us_per_msg", self.rounds)),
                f"{fmt_pct(med(series(nd, 'busy_pct')))} / "
                f"{fmt_pct(med(series(ref, 'busy_pct')))}",
            ] + ([f"{fmt_pct(med(series(nd, 'lost')))} / {fmt_pct(med(series(ref, 'lost')))}"]
                 if mode.udp else [])) + " |")
        tools = sorted({lab for (lab, mk) in self.res if mk == mode.key
                        and not lab.startswith(("netechod/", "ref/"))})
        if tools:
            L.append("")
            L.append(f"Other servers, {mode.title}:")
            L.append("")
            L.append("| server | msgs/s | p99 µs | CPU µs/msg | server busy % | lost | "
                     "vs bare epoll | netechod fork ÷ it | netechod epoll ÷ it |")
            L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            for lab in tools:
                d = self.get(lab, mode.key)
                L.append("| " + " | ".join([
                    lab, fmt_spread(series(d, "msgs_per_s")),
                    fmt_n(med(series(d, "p99_us"))),
                    fmt_spread(series(d, "cpu_us_per_msg")),
                    fmt_pct(med(series(d, "busy_pct"))),
                    fmt_pct(med(series(d, "lost"))),
                    fmt_ratio(paired(d, bare, "msgs_per_s", self.rounds)),
                    fmt_ratio(paired(self.get("netechod/fork", mode.key), d, "msgs_per_s",
                                     self.rounds)),
                    fmt_ratio(paired(self.get("netechod/epoll", mode.key), d, "msgs_per_s",
                                     self.rounds)),
                ]) + " |")
        L.append("")
        return L

    def px_ratios(self, m, variant):
        """Per-round connects/s with a variant header ÷ without, model m."""
        keys = dict((v, md.key) for v, md in PX_VARIANTS)
        return paired(self.get(f"netechod/{m}", keys[variant]),
                      self.get(f"netechod/{m}", keys["none"]), "connects_per_s", self.rounds)

    def px_table(self, mode):
        keys = dict((v, md.key) for v, md in PX_VARIANTS)
        L = [f"### {mode.title} (`netecho bench {' '.join(mode.args)} [--proxy v1|v2]`)", "",
             "Per model and round, in a rotating order: the connect rate without a header "
             "on the model's usual TCP listener, and with `--proxy v1` and `--proxy v2` on a "
             "second TCP listener of the same model that has `proxy_protocol = true; "
             'proxy_from = [ "127.0.0.0/8" ];`. Ratios: connects/s with the header ÷ '
             "without, per round.", "",
             "| model | connects/s no header | connects/s v1 | connects/s v2 | v1 ÷ none | "
             "v2 ÷ none | CPU µs/conn none / v1 / v2 |",
             "|---|---:|---:|---:|---:|---:|---:|"]
        for m in self.models:
            d = {v: self.get(f"netechod/{m}", k) for v, k in keys.items()}
            if not any(d.values()):
                continue
            name = m if m != "epoll2" else "epoll workers=2"
            L.append("| " + " | ".join([
                name,
                fmt_spread(series(d["none"], "connects_per_s")),
                fmt_spread(series(d["v1"], "connects_per_s")),
                fmt_spread(series(d["v2"], "connects_per_s")),
                fmt_ratio(self.px_ratios(m, "v1")),
                fmt_ratio(self.px_ratios(m, "v2")),
                " / ".join(fmt_n(med(series(d[v], "cpu_us_per_msg")))
                           for v in ("none", "v1", "v2")),
            ]) + " |")
        L.append("")
        return L

    def idle_table(self):
        L = ["### Idle TCP connections held while a fresh connection echoes", "",
             "Each idle connection is opened by the script and proven served (one byte "
             "echoed), then left silent. RSS = sum of VmRSS over the server's process tree "
             "(netechod: the listener's handler process and its children), per connection "
             "= (with N idle − before) / N; PSS likewise from smaps_rollup (shared pages "
             "split, which matters for fork). Fresh echo = median of `netecho echo` round "
             "trips (connect included) before and while the idle connections are held.", "",
             "| model | idle asked | held netechod / ref | RSS KiB/conn netechod | "
             "RSS KiB/conn ref | PSS KiB/conn netechod / ref | fresh echo ms netechod "
             "(before → held) | fresh echo ms ref (before → held) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for m in self.models:
            nd = self.idle.get(f"netechod/{m}")
            ref = self.idle.get(f"ref/{REF_OF[m]}")
            if not nd:
                continue

            def g(r, k):
                return r.get(k) if r else None

            def fe(r):
                if not r:
                    return "–"
                s = f"{fmt_n(r['fresh_ms_before'])} → {fmt_n(r['fresh_ms_idle'])}"
                if r["fresh_fails"]:
                    s += f" ({r['fresh_fails']} failed)"
                return s
            name = m if m != "epoll2" else "epoll workers=2 (ref epoll)"
            held = f"{g(nd, 'held')} / {g(ref, 'held') if ref else '–'}"
            notes = "; ".join(x for x in (g(nd, "note"), g(ref, "note")) if x)
            L.append("| " + " | ".join([
                name + (f" [{notes}]" if notes else ""), str(nd["asked"]), held,
                fmt_n(g(nd, "rss_kib_per_conn")), fmt_n(g(ref, "rss_kib_per_conn")),
                f"{fmt_n(g(nd, 'pss_kib_per_conn'))} / {fmt_n(g(ref, 'pss_kib_per_conn'))}",
                fe(nd), fe(ref)]) + " |")
        L.append("")
        return L

    def targets(self):
        """[(text, met: True/False/None, figure)]"""
        T = []
        # 1. every model >= 0.9x own ref, CPU <= 1.15x
        tp_fail, cpu_fail, tp_worst, cpu_worst = [], [], None, None
        for m in TARGET_MODELS:
            if m not in self.models:
                continue
            for mode in self.modes:
                nd, ref = self.get(f"netechod/{m}", mode.key), self.get(f"ref/{m}", mode.key)
                r = med(paired(nd, ref, "msgs_per_s", self.rounds))
                c = med(paired(nd, ref, "cpu_us_per_msg", self.rounds))
                if r is not None:
                    if r < 0.9:
                        tp_fail.append(f"{m} {mode.key} {r:.2f}x")
                    if tp_worst is None or r < tp_worst[0]:
                        tp_worst = (r, f"{m} {mode.key}")
                if c is not None:
                    if c > 1.15:
                        cpu_fail.append(f"{m} {mode.key} {c:.2f}x")
                    if cpu_worst is None or c > cpu_worst[0]:
                        cpu_worst = (c, f"{m} {mode.key}")
        T.append(("Every model ≥ 0.9× its own bare reference on every mode (msgs/s)",
                  None if tp_worst is None else not tp_fail,
                  (f"worst {tp_worst[1]} {tp_worst[0]:.2f}×" if tp_worst else "not measured")
                  + (f"; below 0.9×: {', '.join(tp_fail)}" if tp_fail else "")))
        T.append(("Server CPU per message ≤ 1.15× the reference's, every model and mode",
                  None if cpu_worst is None else not cpu_fail,
                  (f"worst {cpu_worst[1]} {cpu_worst[0]:.2f}×" if cpu_worst else
                   "not measured") + (f"; above 1.15×: {', '.join(cpu_fail)}"
                                      if cpu_fail else "")))
        # 2. epoll >= 1.0x bare epoll on pp x50 and x500
        figs, met = [], None
        for mk in ("pp64x50", "pp64x500"):
            r = med(paired(self.get("netechod/epoll", mk), self.get("ref/epoll", mk),
                           "msgs_per_s", self.rounds))
            if r is not None:
                figs.append(f"{mk} {r:.2f}×")
                met = (met is not False) and r >= 1.0
        T.append(("epoll (workers=1) ≥ 1.0× the bare epoll loop on ping-pong 64 B ×50 and ×500",
                  met, ", ".join(figs) or "not measured"))
        # 3. fork connect-rate >= 3x xinetd
        r = med(paired(self.get("netechod/fork", "connect"), self.get("xinetd", "connect"),
                       "msgs_per_s", self.rounds))
        if r is None:
            T.append(("fork connect rate ≥ 3× xinetd's internal echo", None,
                      "xinetd not measured (not installed, or tools skipped: "
                      "use --install, without --quick/--no-tools)"))
        else:
            f = med(series(self.get("netechod/fork", "connect"), "msgs_per_s"))
            x = med(series(self.get("xinetd", "connect"), "msgs_per_s"))
            T.append(("fork connect rate ≥ 3× xinetd's internal echo", r >= 3.0,
                      f"{r:.2f}× ({fmt_n(f)} vs {fmt_n(x)} connections/s)"))
        # 4. <= 4 KiB RSS per idle conn on epoll/poll/select
        figs, met = [], None
        for m in ("epoll", "poll", "select"):
            i = self.idle.get(f"netechod/{m}")
            if i and i.get("rss_kib_per_conn") is not None:
                figs.append(f"{m} {i['rss_kib_per_conn']:.2f} KiB ({i['held']} conns)")
                met = (met is not False) and i["rss_kib_per_conn"] <= 4.0
        T.append(("≤ 4 KiB RSS per idle TCP connection on epoll, poll, select", met,
                  ", ".join(figs) or "not measured"))
        # 5. 10000 idle held on epoll, poll, thread
        figs, met = [], None
        for m in ("epoll", "poll", "thread"):
            i = self.idle.get(f"netechod/{m}")
            if i and i["asked"] < 10000:
                figs.append(f"{m}: only {i['asked']} asked, {i['held']} held")
            elif i:
                ok = i["held"] >= 10000 and i["fresh_ms_idle"] is not None and \
                    i["fresh_fails"] == 0
                figs.append(f"{m} {i['held']}/{i['asked']} held, fresh echo "
                            f"{fmt_n(i['fresh_ms_idle'])} ms"
                            + (f", {i['fresh_fails']} probes failed" if i["fresh_fails"]
                               else ""))
                met = (met is not False) and ok
        T.append(("10000 idle connections held on epoll, poll, thread (fresh one still "
                  "echoes)", met if met is not None or not figs else None, "; ".join(figs) or "not measured"))
        return T

    def markdown(self, header, started, elapsed):
        L = list(header)
        L.append("## Results")
        L.append("")
        L.append(f"Medians over {self.rounds} round(s), (min–max) in brackets; ratios are "
                 "medians of per-round ratios (netechod and its reference run back to "
                 "back in each round, the order flipped every round). 'ref' is the bare "
                 "server of the same model from bench/ref-echo.c; 'vs bare epoll' divides "
                 "by ref-echo epoll. CPU µs/msg = server CPU time (user+system) during the "
                 "run ÷ messages echoed.")
        L.append("")
        runs = [r for _, _, _, r in self.all_results() if "foreign_pct" in r]
        if runs:
            dist = [r for r in runs if r.get("disturbed")]
            retried = [r for r in runs if r.get("attempts", 1) > 1]
            L.append(
                "Interference: besides the server (CPU 0) and the client (CPU 1), other "
                "processes on the machine used a median "
                f"{med([r['foreign_server_cpu_pct'] for r in runs]):.1f} % of CPU 0 and "
                f"{med([r['foreign_client_cpu_pct'] for r in runs]):.1f} % of CPU 1 "
                f"during the runs (max {max(r['foreign_server_cpu_pct'] for r in runs):.0f} % "
                f"/ {max(r['foreign_client_cpu_pct'] for r in runs):.0f} %); steal median "
                f"{med([r['steal_pct'] for r in runs]):.1f} %. {len(retried)} of {len(runs)} "
                f"runs were repeated for going over {self.ctx.args.max_foreign:g} %, "
                f"{len(dist)} stayed over it"
                + (" (" + ", ".join(f"{r['mode']} {r['server']} r{r['round'] + 1} "
                                    f"{r['foreign_pct']:.0f} %" for r in dist[:12])
                   + (", ..." if len(dist) > 12 else "") + ")" if dist else "") + ".")
            L.append("")
        for mode in self.modes:
            if mode.proxy:
                if any(mk.startswith(mode.key + "-") for (_, mk) in self.res):
                    L.extend(self.px_table(mode))
            elif any(mk == mode.key for (_, mk) in self.res):
                L.extend(self.mode_table(mode))
        if self.idle:
            L.extend(self.idle_table())
        errs = [(lab, mk, rnd, r) for lab, mk, rnd, r in self.all_results() if r.get("errors")]
        if errs:
            L.append("### Errors")
            L.append("")
            for lab, mk, rnd, r in errs:
                L.append(f"- round {rnd + 1} {mk} {lab}: errors={r['errors']} "
                         f"{r.get('first_error', '')}")
            L.append("")
        L.append("## Targets")
        L.append("")
        for text, met, fig in self.targets():
            state = "not measured" if met is None else ("met" if met else "**NOT met**")
            L.append(f"- {text}: {state} — {fig}")
        L.append("")
        L.append(f"(Run took {elapsed / 60:.1f} min, started {started}.)")
        L.append("")
        return L


# ---------------------------------------------------------------- main

def machine_header(ctx, argv_str):
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout if \
        shutil.which("lscpu") else ""
    m = re.search(r"^Model name:\s*(.+)$", lscpu, re.M)
    model = m.group(1).strip() if m else "unknown"
    hv = re.search(r"^Hypervisor vendor:\s*(.+)$", lscpu, re.M)
    rev = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                         capture_output=True, text=True).stdout.strip() or "unknown"
    nver = subprocess.run([ctx.netechod, "-V"], capture_output=True, text=True).stdout.strip()
    L = ["# netechod benchmark results", "",
         "## Machine", "",
         f"- CPU: {model}" + (f" (virtualised, {hv.group(1).strip()})" if hv else ""),
         f"- cores: {os.cpu_count()}",
         f"- kernel: {os.uname().release}",
         f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
         f"- netechod: {nver or '?'}, tree {rev}, build dir `{ctx.args.build}` "
         f"({build_type(ctx.args.build)})" +
         (f"; daemon measured: `{ctx.netechod}`" if ctx.args.netechod else ""),
         f"- pinning: " + (f"servers on CPU {SERVER_CPU}, netecho bench on CPU {CLIENT_CPU} "
                           "(taskset)" if ctx.pin else "none (fewer than 2 CPUs)"),
         f"- server CPU time from: {ctx.acct.describe}",
         f"- load average (1/5/15 min) at start: {ctx.load_start}; at end: "
         f"{' '.join(read('/proc/loadavg', '? ? ?').split()[:3])}",
         "- network: private namespace (`unshare -n`), 127.0.0.1 only", "",
         "## Command", "", "```", argv_str, "```", ""]
    if ctx.notes:
        L.append("Notes:")
        L.append("")
        L.extend(f"- {n}" for n in ctx.notes)
        L.append("")
    return L


def build_type(build):
    s = read(os.path.join(build, "meson-info", "intro-buildoptions.json"))
    try:
        for o in json.loads(s):
            if o["name"] == "buildtype":
                return f"buildtype={o['value']}"
    except Exception:
        pass
    return "buildtype=?"


def ensure_build(build):
    if not os.path.exists(os.path.join(build, "build.ninja")):
        log(f"bench: meson setup {build}")
        subprocess.run(["meson", "setup", build, ROOT], check=True, timeout=600,
                       stdout=sys.stderr)
    log(f"bench: meson compile -C {build}")
    subprocess.run(["meson", "compile", "-C", build], check=True, timeout=1200,
                   stdout=sys.stderr)


def install_tools():
    want = [p for p, exe in (("xinetd", "xinetd"), ("socat", "socat"), ("ncat", "ncat"))
            if not shutil.which(exe)]
    if not want:
        return
    log(f"bench: apt-get install {' '.join(want)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update"], env=env, timeout=600, stdout=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends"] + want, env=env,
                   timeout=900, stdout=sys.stderr)


def enter_netns(argv):
    env = dict(os.environ, **{NETNS_ENV: "1"})
    script = os.path.abspath(__file__)
    for pre in (["unshare", "-n", "--"], ["unshare", "-r", "-n", "--"]):
        cmd = pre + [sys.executable, script] + argv
        r = subprocess.run(pre + ["true"], capture_output=True)
        if r.returncode == 0:
            os.execvpe(cmd[0], cmd, env)
    raise SystemExit("bench: cannot make a private network namespace (unshare -n); "
                     "refusing to run outside one")


def setup_netns():
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
    for k, v in (("net/ipv4/ip_local_port_range", EPHEMERAL),
                 ("net/core/somaxconn", "4096")):
        try:
            with open(f"/proc/sys/{k}", "w") as f:
                f.write(v)
        except OSError:
            pass


class Scraper:
    """GET /metrics SCRAPE_HZ times a second on a fresh connection each
    time (what costs the server most), in a thread, while a bench runs."""

    def __init__(self, port, hz):
        import threading
        self.port, self.period = port, 1.0 / hz
        self.ok = self.errors = 0
        self.first_error = None
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def once(self):
        with socket.create_connection((HOST, self.port), timeout=2) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                data += b
        head, _, body = data.partition(b"\r\n\r\n")
        m = re.search(rb"Content-Length: (\d+)", head)
        if not head.startswith(b"HTTP/1.1 200 ") or not m or int(m.group(1)) != len(body):
            raise ValueError(f"bad response: {head[:80]!r}")

    def run(self):
        nxt = time.monotonic()
        while not self.stop_ev.is_set():
            try:
                self.once()
                self.ok += 1
            except (OSError, ValueError) as e:
                self.errors += 1
                self.first_error = self.first_error or str(e)
            nxt += self.period
            self.stop_ev.wait(max(0.0, nxt - time.monotonic()))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.thread.join(timeout=10)


def scrape_main(ctx, args, models, argv_str):
    mode = MODE_BY_KEY["pp64x50"]
    rows, failed = [], False
    started = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
    try:
        nd = start_netechod(ctx, models, metrics=True)
        end = time.monotonic() + 10
        while not tcp_accepts(PORT_METRICS) and time.monotonic() < end:
            time.sleep(0.1)
        for m in models:
            t = nd[(m, "tcp")]
            base, scr, scrapes, errs = [], [], 0, []
            for rnd in range(args.rounds):
                r0 = run_bench(ctx, t, mode, args.duration)
                with Scraper(PORT_METRICS, SCRAPE_HZ) as sc:
                    r1 = run_bench(ctx, t, mode, args.duration)
                base.append(r0.get("msgs_per_s") or 0.0)
                scr.append(r1.get("msgs_per_s") or 0.0)
                scrapes += sc.ok
                for r in (r0, r1):
                    if r.get("errors"):
                        errs.append(r.get("first_error") or "bench errors")
                if sc.errors:
                    errs.append(f"{sc.errors} failed scrapes: {sc.first_error}")
                log(f"bench: scrape {m} round {rnd + 1}: {base[-1]:.0f} msgs/s alone, "
                    f"{scr[-1]:.0f} while scraping ({sc.ok} scrapes)")
            mb, ms = statistics.median(base), statistics.median(scr)
            ratio = ms / mb if mb else 0.0
            want = scrapes >= 0.8 * SCRAPE_HZ * args.duration * args.rounds
            if ratio < SCRAPE_MIN_RATIO or errs or not want:
                failed = True
            rows.append((m, mb, ms, ratio, scrapes, "; ".join(errs) or
                         ("" if want else "too few scrapes")))
    except KeyboardInterrupt:
        log("bench: interrupted")
        failed = True
    finally:
        ctx.cleanup()
    print(f"## Scraping while serving: {mode.title}, {SCRAPE_HZ} scrapes/s\n")
    print(f"{started}; `{argv_str}`; {args.rounds} rounds of {args.duration:g} s, "
          f"medians; ratio = with / without scraping, at least {SCRAPE_MIN_RATIO}.\n")
    print("| model | msgs/s alone | msgs/s scraped | ratio | scrapes | problems |")
    print("|---|---:|---:|---:|---:|---|")
    for m, mb, ms, ratio, n, e in rows:
        print(f"| {m} | {mb:.0f} | {ms:.0f} | {ratio:.3f} | {n} | {e} |")
    if failed:
        log("bench: scrape FAILED")
        return 1
    return 0


# ---------------------------------------------------------------- chat

# --chat: `netecho bench --chat` against a netechod chat listener per model
# and against chat references. Ports: PORT_CHAT + model index (tcp and udp
# of netechod), PORT_CHAT_REF + reference index.
PORT_CHAT = 15500
PORT_CHAT_REF = 15600
CHAT_MODES = [
    Mode("chat100x1", "chat, 100 members, 1 sender at max rate",
         ["--chat", "-c", "100", "-S", "1"]),
    Mode("chat100x100", "chat, 100 members, 100 senders at 10 lines/s",
         ["--chat", "-c", "100", "-S", "100", "-r", "10"]),
    Mode("chat1000x10", "chat, 1000 members, 10 senders at 10 lines/s",
         ["--chat", "-c", "1000", "-S", "10", "-r", "10", "-t", "30"],
         skip=("select",)),  # select holds at most 960 (FD_SETSIZE)
    Mode("chatudp100x1", "UDP chat, 100 members, 1 sender at max rate",
         ["--chat", "-u", "-c", "100", "-S", "1"], udp=True),
    Mode("chat10x10", "chat, 10 members, 10 senders at 1 line/s (the conversation alone)",
         ["--chat", "-c", "10", "-S", "10", "-r", "1"]),
    Mode("chatcrowd", "chat, the same 10 senders at 1 line/s beside 10000 idle members",
         ["--chat", "-c", "10010", "-S", "10", "-r", "1", "-t", "60"], crowd=True),
]
# chatcrowd runs on the models and references that hold 10000 connections
# (select stops at FD_SETSIZE, fork would start 10000 pumps, ncat and
# select-chat.py use select()).
CROWD_MODELS = ("thread", "poll", "epoll")
CROWD_REFS = ("ref-chat", "ngircd")
CHAT_MODE_BY_KEY = {m.key: m for m in CHAT_MODES}
# --quick: one small chat per model (tcp), and udp on poll; any error fails.
CHAT_QUICK = Mode("chatquick", "chat smoke, 10 members, 2 senders at 20 lines/s",
                  ["--chat", "-c", "10", "-S", "2", "-r", "20"])
CHAT_QUICK_UDP = Mode("chatquickudp", "UDP chat smoke, 10 members, 2 senders at 20 lines/s",
                      ["--chat", "-u", "-c", "10", "-S", "2", "-r", "20"], udp=True)
CHAT_REFS = ["ref-chat", "ngircd", "ncat", "select-chat.py"]
IRC_OPER = "bench:bench"


def chat_netechod_config(ctx, models):
    items = []
    for m in models:
        model = "epoll" if m == "epoll2" else m
        extra = f" max_clients = {SELECT_MAX};" if m == "select" else \
            (" workers = 2;" if m == "epoll2" else "")
        port = PORT_CHAT + MODELS.index(m)
        for proto in ("tcp", "udp"):
            # udp chat: one worker (the room lives in one process)
            e = extra if proto == "tcp" or m == "select" else ""
            items.append(conf_listener(f"c-{m}-{proto}", proto, port, model, "chat", e))
    return write_netechod_config(ctx, "netechod-chat.conf", items)


def wait_listen(proto, port, p, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if p.poll() is not None:
            return False
        if listen_inode(proto, port) is not None:
            return True
        time.sleep(0.05)
    return False


def start_chat_netechod(ctx, models):
    """Targets by (model, "tcp" | "udp"), each with its handler's cgroup."""
    conf = chat_netechod_config(ctx, models)
    p = launch_netechod(ctx, conf, "chat bench", os.path.join(ctx.tmp, "netechod-chat.log"))
    targets = {}
    end = time.monotonic() + 20
    for m in models:
        port = PORT_CHAT + MODELS.index(m)
        for proto in ("tcp", "udp"):
            resolver = handler_resolver(p, proto, port)
            pid = None
            while time.monotonic() < end and not pid:
                if p.poll() is not None:
                    raise SystemExit("netechod exited at start-up:\n" +
                                     read(os.path.join(ctx.tmp, "netechod-chat.log"), ""))
                pid = resolver()
                if not pid:
                    time.sleep(0.1)
            if not pid:
                raise SystemExit(f"netechod chat {m} {proto} not ready after 20 s\n" +
                                 read(os.path.join(ctx.tmp, "netechod-chat.log"), ""))
            t = netechod_target(ctx, m, proto, port, pid, resolver, f"ndc-{m}-{proto}")
            t.rss0_kb = tree_mem_kb(pid)[0]
            targets[(m, proto)] = t
    return targets


def ngircd_conf(ctx, port):
    """The config and whether MaxPenaltyTime (flood penalties off) is known
    to this ngircd: `ngircd --configtest` prints every setting it knows."""
    base = f"""[Global]
	Name = bench.irc.local
	Ports = {port}
	Listen = {HOST}
	MotdPhrase = bench
	PidFile = {os.path.join(ctx.tmp, "ngircd.pid")}
[Limits]
	MaxConnections = 0
	MaxConnectionsIP = 0
	MaxJoins = 0
	PingTimeout = 600
	PongTimeout = 60
%s[Options]
	DNS = no
	Ident = no
	PAM = no
[Operator]
	Name = {IRC_OPER.split(':')[0]}
	Password = {IRC_OPER.split(':')[1]}
"""
    path = os.path.join(ctx.tmp, "ngircd.conf")
    with open(path, "w") as f:
        f.write(base % "\tMaxPenaltyTime = 0\n")
    r = subprocess.run([shutil.which("ngircd"), "--configtest", "-f", path],
                       capture_output=True, text=True, timeout=10)
    if "MaxPenaltyTime = 0" in r.stdout:
        return path, True
    with open(path, "w") as f:
        f.write(base % "")
    return path, False


def start_chat_refs(ctx):
    """Targets by name (tcp); names not installed are noted as skipped."""
    targets = {}
    ref_chat = os.path.join(ctx.args.build, "bench", "ref-chat")
    for i, name in enumerate(CHAT_REFS):
        port = PORT_CHAT_REF + i
        extra, ready, argv = [], None, None
        if name == "ref-chat":
            if not os.access(ref_chat, os.X_OK):
                ctx.notes.append(f"ref-chat: skipped ({ref_chat} not built)")
                continue
            argv, ready = [ref_chat, str(port)], "ready"
        elif name == "ngircd":
            if not shutil.which("ngircd"):
                ctx.notes.append("ngircd: skipped (not installed)")
                continue
            conf, penalty_off = ngircd_conf(ctx, port)
            argv = [shutil.which("ngircd"), "-n", "-f", conf]
            extra = ["--irc", "--oper", IRC_OPER]
            ctx.notes.append("ngircd " + (subprocess.run(
                [shutil.which("ngircd"), "--version"], capture_output=True,
                text=True).stdout.split() or ["?", "?"])[1].split("-")[0] + ": generated config, MaxConnectionsIP = 0, "
                + ("MaxPenaltyTime = 0 (flood penalties off)" if penalty_off else
                   "MaxPenaltyTime unknown to this ngircd (penalties on)")
                + f"; senders OPER as {IRC_OPER.split(':')[0]}; channel #bench")
        elif name == "ncat":
            if not shutil.which("ncat"):
                ctx.notes.append("ncat --chat: skipped (not installed)")
                continue
            argv = [shutil.which("ncat"), "-l", HOST, str(port), "-k", "-m", "20000", "--chat"]
            extra = ["--ncat"]
        else:
            argv, ready = [sys.executable, os.path.join(HERE, "select-chat.py"), str(port)], \
                "ready"
        cg = ctx.acct.make(f"cref-{name}")

        def launch(argv=argv, ready=ready, cg=cg, port=port, name=name):
            p = ctx.procs.start(argv, cpu=ctx.server_cpu(), cgroup=cg,
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE if ready else subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
            ok = wait_line(p, ready, 10) if ready else True
            if not (ok and wait_listen("tcp", port, p)):
                ctx.procs.stop(p)
                return None
            return p
        p = launch()
        if not p:
            ctx.notes.append(f"{name}: did not start; skipped")
            continue
        t = Target(name, "chatref", name, "tcp", port, p.pid, cg, ctx.acct)
        t.extra = extra
        t.rss0_kb = tree_mem_kb(p.pid)[0]
        if name == "ncat":
            # ncat --chat quits ("getpeername ... failed") when members
            # leave in a burst, as they do at the end of every run: a
            # fresh one for each run.
            def restart(t=t, launch=launch):
                old = [q for q in ctx.procs.procs if q.pid == t.root_pid]
                for q in old:
                    ctx.procs.stop(q, grace=0.5)
                q = launch()
                t.root_pid = q.pid if q else None
            t.before = restart
        targets[name] = t
    return targets


class ChatReport:
    def __init__(self, ctx, models, modes, rounds):
        self.ctx, self.models, self.modes, self.rounds = ctx, models, modes, rounds
        self.res = {}

    def add(self, rnd, t, mode, r):
        self.res.setdefault((t.label, mode.key), {})[rnd] = r

    def get(self, label, key):
        return self.res.get((label, key), {})

    def table(self, mode):
        L = [f"### {mode.title} (`netecho bench {' '.join(mode.args)}`)", "",
             "| server | deliveries/s | p50 µs | p99 µs | server CPU µs/delivery | "
             "÷ ngircd | ÷ ref-chat | errors |" +
             (" peak RSS MiB | KiB per member |" if mode.crowd else ""),
             "|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if mode.crowd else "")]
        labels = [f"netechod/{m}" for m in self.models] + CHAT_REFS
        ng, rc = self.get("ngircd", mode.key), self.get("ref-chat", mode.key)
        for lab in labels:
            d = self.get(lab, mode.key)
            if not d:
                continue
            errs = [v.get("errors") or 0 for v in d.values()]
            disturbed = sum(1 for v in d.values() if v.get("disturbed"))
            L.append("| " + " | ".join([
                lab if lab != "netechod/epoll2" else "netechod/epoll workers=2",
                fmt_spread(series(d, "msgs_per_s")) +
                (f" (disturbed {disturbed}/{len(d)})" if disturbed else ""),
                fmt_n(med(series(d, "p50_us"))), fmt_n(med(series(d, "p99_us"))),
                fmt_spread(series(d, "cpu_us_per_msg")),
                fmt_ratio(paired(d, ng, "msgs_per_s", self.rounds)) if lab != "ngircd" else "",
                fmt_ratio(paired(d, rc, "msgs_per_s", self.rounds)) if lab != "ref-chat"
                else "",
                str(sum(errs)) + ("" if not sum(errs) else " (" + next(
                    (v.get("first_error", "") for v in d.values() if v.get("errors")), "")
                    .replace("|", "/")[:80] + ")"),
            ] + ([fmt_n(med([v["peak_rss_kb"] / 1024 for v in d.values()
                             if v.get("peak_rss_kb")] or [None])),
                  fmt_spread(series(d, "kb_per_member"))] if mode.crowd else [])) + " |")
        L.append("")
        return L

    def markdown(self, header, started, elapsed):
        L = list(header)
        L.append("## Chat")
        L.append("")
        L.append(f"{started}; {self.rounds} round(s) of {self.ctx.args.duration:g} s; "
                 f"took {elapsed:.0f} s. Medians, (min–max) over rounds; deliveries are "
                 "lines received by members, each checked for exactly once and in order; "
                 "server CPU from the server's cgroup (or /proc) over the whole run, joins "
                 "and drain included, divided by deliveries. Ratios are per round. "
                 "\"disturbed\": other processes took more than --max-foreign % of the "
                 "server's or the client's CPU during that run, even after a retry.")
        L.append("")
        for mode in self.modes:
            L.extend(self.table(mode))
        return L


def chat_seq(rnd, nd, refs, models, mode):
    proto = "udp" if mode.udp else "tcp"
    seq = [nd[(m, proto)] for m in models if (not mode.crowd or m in CROWD_MODELS)
           and m not in mode.skip]
    if not mode.udp:
        seq += [t for n, t in refs.items() if (not mode.crowd or n in CROWD_REFS)
                and n not in mode.skip]
    # alternate: every round starts one server later
    k = rnd % len(seq) if seq else 0
    return seq[k:] + seq[:k]


def chat_main(ctx, args, models, argv_str):
    modes = [CHAT_MODE_BY_KEY[k] for k in (args.modes.split(",") if args.modes else
                                           [m.key for m in CHAT_MODES])
             if k in CHAT_MODE_BY_KEY or sys.exit(f"unknown chat mode {k}")]
    if args.quick:
        modes = [CHAT_QUICK, CHAT_QUICK_UDP]
    started = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
    t_start = time.monotonic()
    rep = ChatReport(ctx, models, modes, args.rounds)
    raw = {"runs": []}
    failed = False
    try:
        failed = chat_runs(ctx, args, models, modes, rep, raw)
        if ctx.nd_proc and ctx.nd_proc.poll() is not None:
            failed = True
            ctx.notes.append("netechod exited during the run")
    except KeyboardInterrupt:
        log("bench: interrupted")
        failed = True
    finally:
        nd_log = read(os.path.join(ctx.tmp, "netechod-chat.log"), "")
        ctx.cleanup()
    md = rep.markdown(machine_header(ctx, argv_str), started, time.monotonic() - t_start)
    text = "\n".join(md)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    if args.json:
        raw["netechod_log_tail"] = nd_log[-4000:]
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)
    if failed:
        log("bench: FAILED (delivery errors in netechod chat; see above)")
        return 1
    return 0


def chat_runs(ctx, args, models, modes, rep, raw, quick_models=None):
    """Run modes on netechod (models) and, unless --quick, the chat
    references. True when netechod had any error."""
    failed = False
    nd = start_chat_netechod(ctx, models)
    refs = {} if args.quick else start_chat_refs(ctx)
    log(f"bench: chat on {len(models)} netechod models; references: "
        f"{', '.join(refs) or 'none'}; CPU from {ctx.acct.describe}")
    for rnd in range(args.rounds):
        for mode in modes:
            seq = chat_seq(rnd, nd, refs, models, mode)
            if mode is CHAT_QUICK_UDP:
                seq = [t for t in seq if t.model == "poll"] or seq[:1]
            for t in seq:
                r = run_bench(ctx, t, mode, args.duration)
                r["round"] = rnd
                rep.add(rnd, t, mode, r)
                raw["runs"].append(r)
                log(f"[{rnd + 1}/{args.rounds}] {mode.key:12} {t.label:17} "
                    f"{fmt_n(r['msgs_per_s']):>10} deliveries/s  p50 {fmt_n(r.get('p50_us'))}"
                    f" p99 {fmt_n(r.get('p99_us'))} µs  cpu "
                    f"{fmt_n(r.get('cpu_us_per_msg'))} µs/delivery"
                    + (" DISTURBED" if r.get("disturbed") else "")
                    + (f"  ERRORS {r['errors']}: {r.get('first_error', '')}"
                       if r.get("errors") else ""))
                if r.get("errors") and t.kind == "netechod":
                    failed = True
    return failed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", help="meson build dir (default: build in the source tree); "
                    "set up and compiled when needed")
    ap.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    ap.add_argument("--duration", type=float, default=5.0,
                    help="seconds per measurement (default 5)")
    ap.add_argument("--quick", action="store_true",
                    help="CI smoke: 1 round, 1 s each, few modes; exit 1 on any error")
    ap.add_argument("--install", action="store_true",
                    help="apt-get install xinetd, socat, ncat when missing")
    ap.add_argument("--out", help="write the markdown report here (a hand-written part "
                    "after the line '<!-- end of generated part -->' is kept)")
    ap.add_argument("--json", help="write every raw result here")
    ap.add_argument("--modes", help="comma-separated subset of: " +
                    ",".join(m.key for m in MODES) + "; or scrape (alone): pp64x50 while "
                    "the metrics listener is scraped 20 times a second")
    ap.add_argument("--models", help="comma-separated subset of: " + ",".join(MODELS))
    ap.add_argument("--no-tools", action="store_true", help="skip xinetd, socat, ncat, ...")
    ap.add_argument("--no-idle", action="store_true", help="skip the idle-connection test")
    ap.add_argument("--max-foreign", type=float, default=10.0,
                    help="a run during which other processes used more than this %% of "
                    "the server's or the client's CPU is repeated (default 10)")
    ap.add_argument("--retries", type=int, default=1,
                    help="how often a disturbed run is repeated (default 1)")
    ap.add_argument("--quiet-wait", type=float, default=5.0,
                    help="seconds to wait at most for a quiet machine before each run "
                    "(default 5)")
    ap.add_argument("--budget", type=float, default=0,
                    help="minutes after which disturbed runs are no longer repeated nor "
                    "quiet moments awaited (default: no limit)")
    ap.add_argument("--chat", action="store_true",
                    help="chat modes instead: " + ",".join(m.key for m in CHAT_MODES) +
                    " (--modes picks among them) on every model and the chat references "
                    "(ref-chat, ngircd, ncat --chat, select-chat.py); with --quick only a "
                    "chat smoke per model")
    ap.add_argument("--netechod", metavar="PATH",
                    help="the netechod binary to measure (default: BUILD/src/netechod); "
                    "the client and the references still come from --build, so two "
                    "daemons (before and after a change) meet the same load")
    ap.add_argument("--idle", type=int, help="idle connections per server (default: 10000; "
                    "fork 1000, select 950)")
    args = ap.parse_args()

    if args.quick:
        args.rounds, args.duration = 1, 1.0
        args.retries, args.quiet_wait = 0, 0.0
    if args.rounds < 1 or args.duration <= 0:
        ap.error("--rounds must be >= 1 and --duration > 0")
    scrape = args.modes == "scrape"
    modes = [] if scrape or args.chat else [MODE_BY_KEY[k] for k in (args.modes.split(",") if args.modes else
                                      (QUICK_MODES if args.quick else
                                       [m.key for m in MODES]))
             if k in MODE_BY_KEY or ap.error(f"unknown mode {k}")]
    models = [m for m in (args.models.split(",") if args.models else MODELS)
              if m in MODELS or ap.error(f"unknown model {m}")]
    if args.quick and not args.models:
        models = [m for m in models if m != "epoll2"]
    args.build = os.path.abspath(args.build) if args.build else os.path.join(ROOT, "build")
    if args.netechod:
        args.netechod = os.path.abspath(args.netechod)
        if not os.access(args.netechod, os.X_OK):
            ap.error(f"--netechod {args.netechod}: not an executable")
    for a in ("out", "json"):
        if getattr(args, a):
            setattr(args, a, os.path.abspath(getattr(args, a)))

    argv_str = "python3 bench/run.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if os.environ.get(NETNS_ENV) != "1":
        if args.install:
            install_tools()
        ensure_build(args.build)
        os.environ["NETECHO_BENCH_CMD"] = argv_str
        enter_netns(sys.argv[1:])
        return 2
    argv_str = os.environ.get("NETECHO_BENCH_CMD", argv_str)
    setup_netns()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]

    ctx = Context(args)
    if ctx.pin:
        try:
            os.sched_setaffinity(0, {CLIENT_CPU})
        except OSError:
            ctx.pin = False
    def on_signal(signum, frame):
        raise KeyboardInterrupt()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    if scrape:
        return scrape_main(ctx, args, models, argv_str)
    if args.chat:
        return chat_main(ctx, args, models, argv_str)
    started = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
    t_start = time.monotonic()
    rep = Report(ctx, models, modes, args.rounds)
    chat_rep = ChatReport(ctx, models, [CHAT_QUICK, CHAT_QUICK_UDP], args.rounds)
    raw = {"idle": {}, "runs": []}
    failed = False
    try:
        build_ref(ctx)
        nd = start_netechod(ctx, models, proxy=any(m.proxy for m in modes))
        refs = start_refs(ctx, models)
        tools, rep.tool_desc = ({}, {}) if (args.no_tools or args.quick) else start_tools(ctx)
        if tools or rep.tool_desc:
            for name, what in rep.tool_desc.items():
                ctx.notes.append(f"{name}: {what}")
        if ctx.acct.root is None:
            ctx.notes.append("No cgroup could be made: server CPU is read from /proc; the "
                             "reference fork server's exited children (SIGCHLD ignored) "
                             "are not counted, so its CPU/msg is too low.")
        log(f"bench: {len(models)} netechod models, {len(refs) // 2} references, "
            f"tools: {', '.join(sorted({k[0] for k in tools})) or 'none'}; CPU from "
            f"{ctx.acct.describe}")

        # idle connections first, before any load has grown the servers
        if not args.no_idle:
            for m in models:
                n = args.idle or (QUICK_IDLE_N if args.quick else IDLE_N[m])
                if m == "select":
                    n = min(n, SELECT_MAX - 10)
                if nofile < n + 200:
                    newn = max(0, nofile - 200)
                    ctx.notes.append(f"idle test for {m}: RLIMIT_NOFILE {nofile} allows only "
                                     f"{newn} of {n} connections")
                    n = newn
                if n <= 0:
                    continue
                pairs = [nd[(m, "tcp")]]
                rlabel = f"ref/{REF_OF[m]}"
                if rlabel not in rep.idle and not args.quick:
                    pairs.append(refs[(REF_OF[m], "tcp")])
                for t in pairs:
                    log(f"bench: idle {t.label} x{n} ...")
                    r = idle_test(ctx, t, n, (1, 2) if args.quick else (3, 5))
                    rep.idle[t.label] = r
                    raw["idle"][t.label] = r
                    log(f"bench: idle {t.label}: held {r['held']}/{n}, "
                        f"RSS {fmt_n(r['rss_kib_per_conn'])} KiB/conn, fresh echo "
                        f"{fmt_n(r['fresh_ms_before'])} -> {fmt_n(r['fresh_ms_idle'])} ms"
                        + (f" ({r['note']})" if r["note"] else ""))

        # warm-up: every server once, short, not recorded
        if not args.quick:
            wm = [m for m in modes if m.key in ("pp64x50", "udp64x50")]
            for mode in wm:
                proto = "udp" if mode.udp else "tcp"
                for t in [v for k, v in list(nd.items()) + list(refs.items()) +
                          list(tools.items()) if k[1] == proto]:
                    run_bench_once(ctx, t, mode, 0.5)

        def record(rnd, t, mode, r):
            nonlocal failed
            r["round"] = rnd
            rep.add(rnd, t, mode, r)
            raw["runs"].append(r)
            log(f"[{rnd + 1}/{args.rounds}] {mode.key:9} {t.label:17} "
                f"{fmt_n(r['msgs_per_s']):>9} msgs/s  p99 {fmt_n(r.get('p99_us'))} µs"
                f"  cpu {fmt_n(r.get('cpu_us_per_msg'))} µs/msg"
                + (f"  foreign {r['foreign_server_cpu_pct']:.0f}%/"
                   f"{r['foreign_client_cpu_pct']:.0f}%" if "foreign_pct" in r else "")
                + (f" (try {r['attempts']})" if r.get("attempts", 1) > 1 else "")
                + (" DISTURBED" if r.get("disturbed") else "")
                + (f"  ERRORS {r['errors']}: {r.get('first_error', '')}"
                   if r.get("errors") else ""))
            if r.get("errors") and t.kind != "tool":
                failed = True

        for rnd in range(args.rounds):
            for mode in modes:
                if mode.proxy:
                    # netechod only (the references and tools speak no
                    # PROXY protocol); the three variants back to back.
                    for i, m in enumerate(models):
                        k = (rnd + i) % len(PX_VARIANTS)
                        for v, vmode in PX_VARIANTS[k:] + PX_VARIANTS[:k]:
                            t = nd[(m, "tcp" if v == "none" else "tcppx")]
                            record(rnd, t, vmode, run_bench(ctx, t, vmode, args.duration))
                        got = {v: rep.get(f"netechod/{m}", vm.key).get(rnd, {}).get(
                            "connects_per_s") for v, vm in PX_VARIANTS}
                        log(f"[{rnd + 1}/{args.rounds}] {mode.key} {m}: " + ", ".join(
                            f"{v} ÷ none {got[v] / got['none']:.2f}"
                            if got[v] is not None and got["none"] else f"{v} ÷ none –"
                            for v in ("v1", "v2")))
                    continue
                proto = "udp" if mode.udp else "tcp"
                seq = []
                for i, m in enumerate(models):
                    pair = [nd[(m, proto)]]
                    if m == REF_OF[m]:
                        pair.append(refs[(m, proto)])
                    if (rnd + i) % 2:
                        pair.reverse()
                    seq.extend(pair)
                    if m == "fork" and mode.tools and ("xinetd", proto) in tools:
                        seq.append(tools[("xinetd", proto)])
                if mode.tools:
                    seq.extend(t for (name, p), t in tools.items()
                               if p == proto and name != "xinetd")
                for t in seq:
                    record(rnd, t, mode, run_bench(ctx, t, mode, args.duration))
        if ctx.nd_proc.poll() is not None:
            failed = True
            ctx.notes.append("netechod exited during the run")
        if args.quick:
            # the chat smoke: a netechod of its own, every model, no references
            if chat_runs(ctx, args, models, [CHAT_QUICK, CHAT_QUICK_UDP], chat_rep,
                         raw.setdefault("chat", {"runs": []})):
                failed = True
    except KeyboardInterrupt:
        log("bench: interrupted")
        failed = True
    finally:
        nd_log = read(os.path.join(ctx.tmp, "netechod.log"), "") + \
            read(os.path.join(ctx.tmp, "netechod-chat.log"), "")
        ctx.cleanup()

    elapsed = time.monotonic() - t_start
    header = machine_header(ctx, argv_str)
    md = rep.markdown(header, started, elapsed)
    if chat_rep.res:
        md.append("## Chat smoke")
        md.append("")
        for mode in chat_rep.modes:
            md.extend(chat_rep.table(mode))
    text = "\n".join(md)
    print(text)
    if args.out:
        tail = ""
        old = read(args.out)
        marker = "<!-- end of generated part -->"
        if old and marker in old:
            tail = old[old.index(marker) + len(marker):]
        with open(args.out, "w") as f:
            f.write(text + "\n" + marker + tail if tail else text + "\n" + marker + "\n")
    if args.json:
        raw["netechod_log_tail"] = nd_log[-4000:]
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)
    bad = [ln for ln in nd_log.splitlines()
           if re.match(r"\S+ (error|crit|alert|emerg)\b", ln)]
    if bad:
        log("bench: netechod logged errors:\n" + "\n".join(bad[-10:]))
    if failed:
        log("bench: FAILED (errors in netechod or reference benches; see above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
