#!/usr/bin/env python3
"""One chat room across netechod instances through Redis (SPEC 12), measured.

    python3 bench/chat-redis.py [--build DIR] [--models epoll,poll,...]
                                [--protocol tcp|udp] [--duration S]

Starts redis-server (no persistence) and two netechod instances, each with
one chat listener on the same backend and room, and runs `netecho bench
--chat` three ways: 100 members x 1 sender at full speed on one instance,
the same spread over both instances (--also: every other member on the
second, so half the deliveries cross Redis), and 100 members x 100 senders
at 10 lines/s spread over both (latency). Prints a markdown table with
deliveries/s, p50/p99 and the CPU that redis-server and each netechod used
during the run (from /proc/PID/stat), one table per model (the same model on
both instances). --protocol udp runs udp chat listeners and `netecho bench
--chat -u` (one datagram per line).

Like bench/run.py it re-executes itself in a private network namespace
(`unshare -n`, lo up) and uses only 127.0.0.1; every process it starts is
stopped by PID and every wait is bounded.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETNS_ENV = "NETECHO_CHAT_REDIS_NETNS"
HOST = "127.0.0.1"
REDIS_PORT = 15500
PORTS = (15501, 15502)
TICK = os.sysconf("SC_CLK_TCK")

MODES = [
    ("one instance, 100 members x 1 sender at max rate", ["-c", "100", "-S", "1"], False),
    ("two instances, 100 members x 1 sender at max rate", ["-c", "100", "-S", "1"], True),
    ("two instances, 100 members x 100 senders at 10 lines/s",
     ["-c", "100", "-S", "100", "-r", "10"], True),
]


def cpu_ticks(pid):
    """utime + stime of pid and its waited-for children, in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return sum(int(x) for x in fields[11:15])


def tree_pids(pid):
    """pid and its descendants (netechod: dispatcher and handlers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def tree_ticks(pid):
    return sum(cpu_ticks(p) for p in tree_pids(pid))


def wait_port(port, proc, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit(f"chat-redis: a server exited at start (port {port})")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)  # bounded retry of an observable: the port
    sys.exit(f"chat-redis: nothing listens on {HOST}:{port} after {timeout} s")


def wait_log(path, want, proc, timeout=15.0):
    """Bounded wait for a line of the daemon's log (the backend is up)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit(f"chat-redis: netechod exited at start (see {path})")
        with open(path, errors="replace") as f:
            if want in f.read():
                return
        time.sleep(0.05)  # bounded poll of an observable: the log
    sys.exit(f"chat-redis: no '{want}' in {path} after {timeout} s")


def run_model(args, model, netechod, netecho, tmp, rp):
    nds = []
    try:
        for i, port in enumerate(PORTS):
            conf = os.path.join(tmp, f"{model}{i}.conf")
            workers = "workers = 2; " if model == "epoll2" else ""
            # select's fd_set holds FD_SETSIZE descriptors (SPEC 3).
            max_clients = 900 if model == "select" and args.protocol == "tcp" else 2000
            with open(conf, "w") as f:
                f.write(f'log_level = "info";\n'
                        f'listeners = ( {{ name = "hall{i}"; protocol = "{args.protocol}"; '
                        f'address = "{HOST}"; port = {port}; '
                        f'model = "{model.rstrip("2")}"; {workers}'
                        f'service = "chat"; max_clients = {max_clients}; idle_timeout = 0; '
                        f'backend = "redis://{HOST}:{REDIS_PORT}"; room = "bench"; }} );\n')
            log = os.path.join(tmp, f"{model}{i}.log")
            p = subprocess.Popen([netechod, "-c", conf], stdout=subprocess.DEVNULL,
                                 stderr=open(log, "w"))
            nds.append(p)
            wait_log(log, "up, room 'bench'", p)
        print(f"\n{args.protocol} {model}:\n")
        print(f"| mode | deliveries/s | p50 µs | p99 µs | errors | CPU s: redis-server | "
              f"netechod A | netechod B |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for title, extra, both in MODES:
            argv = [netecho, "bench", "--chat"] + (["-u"] if args.protocol == "udp" else []) + \
                [HOST, str(PORTS[0])] + \
                (["--also", f"{HOST}:{PORTS[1]}"] if both else []) + extra + \
                ["-d", str(args.duration)]
            t0 = [cpu_ticks(rp.pid)] + [tree_ticks(p.pid) for p in nds]
            r = subprocess.run(argv, capture_output=True, text=True,
                               timeout=args.duration + 60)
            t1 = [cpu_ticks(rp.pid)] + [tree_ticks(p.pid) for p in nds]
            kv = summary(r.stdout)
            cpu = [(b - a) / TICK for a, b in zip(t0, t1)]
            print(f"| {title} | {kv.get('deliveries_per_s', '?')} | {kv.get('p50_us', '?')} | "
                  f"{kv.get('p99_us', '?')} | {kv.get('errors', '?')} | {cpu[0]:.2f} | "
                  f"{cpu[1]:.2f} | {cpu[2]:.2f} |", flush=True)
            if r.returncode != 0:
                print(f"<!-- netecho exit {r.returncode}: {r.stderr.strip()[-300:]} -->")
    finally:
        stop(nds)


def stop(procs):
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def summary(out):
    for line in reversed(out.splitlines()):
        if "=" in line and " " in line:
            return dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
    return {}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--models", "--model", default="epoll",
                    help="comma-separated: fork, thread, select, poll, epoll, epoll2 "
                         "(epoll with workers = 2)")
    ap.add_argument("--protocol", choices=("tcp", "udp"), default="tcp")
    ap.add_argument("--duration", type=float, default=5)
    args = ap.parse_args()
    if os.environ.get(NETNS_ENV) != "1":
        env = dict(os.environ, **{NETNS_ENV: "1"})
        for pre in (["unshare", "-n", "--"], ["unshare", "-r", "-n", "--"]):
            r = subprocess.run(pre + ["sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                                      sys.executable] + sys.argv, env=env)
            if r.returncode != 125:
                sys.exit(r.returncode)
        sys.exit("chat-redis: cannot enter a private network namespace")
    redis = shutil.which("redis-server") or sys.exit("chat-redis: no redis-server")
    netechod = os.path.join(args.build, "src", "netechod")
    netecho = os.path.join(args.build, "src", "netecho", "netecho")
    tmp = tempfile.mkdtemp(prefix="chat-redis-")
    procs = []
    try:
        rp = subprocess.Popen([redis, "--port", str(REDIS_PORT), "--bind", HOST, "--save", "",
                               "--appendonly", "no", "--daemonize", "no"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(rp)
        wait_port(REDIS_PORT, rp)
        for model in args.models.split(","):
            run_model(args, model, netechod, netecho, tmp, rp)
    finally:
        stop(procs)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
