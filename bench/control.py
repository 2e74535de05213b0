#!/usr/bin/env python3
"""Control-plane bench (not a test): ballast agents on loopback, one machine.

  detect    kill -9 an agent; time until every other agent's /v1/agent/members shows it
            failed (gossip failure detection), N trials
  failover  kill -9 the Raft leader; time until a write through a survivor succeeds
            (election + the write's commit), N trials
  kv        3 servers: sequential PUT latency (p50/p99) and concurrent PUT throughput

usage: bench/control.py [BALLAST_BINARY]   (TRIALS=20 WRITES=500 CLIENTS=8)
Prints a table and saves bench/out/control-<time>.csv.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/ballast"
TRIALS = int(os.environ.get("TRIALS", "20"))
WRITES = int(os.environ.get("WRITES", "500"))
CLIENTS = int(os.environ.get("CLIENTS", "8"))
ROOT = tempfile.mkdtemp(prefix="ballast-bench-control-")
ALL = []  # every agent started, killed at the end whatever happens


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def call(addr, method, path, body=b"", timeout=5.0):
    host, port = addr.split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        c.request(method, path, body)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


class Agent:
    def __init__(self, name, cfg):
        self.name, self.cfg, self.proc = name, cfg, None
        self.http = "127.0.0.1:%d" % cfg["ports"]["http"]

    def start(self):
        path = os.path.join(ROOT, self.name + ".json")
        with open(path, "w") as f:
            json.dump(self.cfg, f)
        log = open(os.path.join(ROOT, self.name + ".log"), "a")
        env = dict(os.environ, RUST_LOG="warn")
        ALL.append(self)
        self.proc = subprocess.Popen([BIN, "agent", "-config-file", path, "-node", self.name],
                                     stdout=subprocess.DEVNULL, stderr=log, env=env)

    def kill9(self):
        if self.proc:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None


def cluster(tag, n):
    serf = [free_port(socket.SOCK_DGRAM) for _ in range(n)]
    agents = []
    for i in range(n):
        cfg = {"server": True, "bootstrap_expect": n, "bind_addr": "127.0.0.1",
               "data_dir": os.path.join(ROOT, tag, "s%d" % i),
               "ports": {"http": free_port(), "serf_lan": serf[i]},
               "retry_join": ["127.0.0.1:%d" % p for p in serf],
               "encrypt": "op+bPRe2ZDynNu2m7V8o1BdFp0L1swlvxzDqOiRWwP0="}
        agents.append(Agent("%s-s%d" % (tag, i), cfg))
    for a in agents:
        a.start()
    return agents


def wait(what, f, limit=30.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        try:
            v = f()
            if v:
                return v
        except OSError:
            pass
        time.sleep(0.005)
    raise SystemExit("timed out waiting for " + what)


def leader(agents, not_addr=None):
    def agree():
        seen = set()
        for a in agents:
            if a.proc is None:
                continue
            st, b = call(a.http, "GET", "/v1/status/leader", timeout=1)
            l = json.loads(b)
            if not l or l == not_addr:
                return None
            seen.add(l)
        return seen.pop() if len(seen) == 1 else None
    return wait("a leader", agree)


def status(viewer, name):
    st, b = call(viewer.http, "GET", "/v1/agent/members", timeout=1)
    for m in json.loads(b):
        if m["Name"] == name:
            return m["StatusText"]
    return None


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def bench_detect(agents):
    out = []
    for t in range(TRIALS):
        wait("all alive", lambda: all(status(v, a.name) == "alive" for v in agents for a in agents))
        victim = agents[t % len(agents)]
        others = [a for a in agents if a is not victim]
        t0 = time.monotonic()
        victim.kill9()
        wait("failed", lambda: all(status(v, victim.name) == "failed" for v in others))
        out.append(time.monotonic() - t0)
        victim.start()
    return out


def bench_failover(agents):
    out = []
    for t in range(TRIALS):
        l = leader(agents)
        victim = next(a for a in agents if a.http == l)
        survivor = next(a for a in agents if a is not victim)
        t0 = time.monotonic()
        victim.kill9()
        wait("a write after failover",
             lambda: call(survivor.http, "PUT", "/v1/kv/bench/failover/%d" % t, b"x", timeout=2)[0] == 200)
        out.append(time.monotonic() - t0)
        victim.start()
        leader(agents)
        # Start every trial from a settled cluster: the restarted server caught up.
        time.sleep(3)
    return out


def bench_kv(agents):
    l = leader(agents)
    host, port = l.split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=5)
    lat = []
    for i in range(WRITES):
        t0 = time.monotonic()
        c.request("PUT", "/v1/kv/bench/lat/%d" % (i % 100), b"v" * 64)
        r = c.getresponse()
        r.read()
        assert r.status == 200
        lat.append(time.monotonic() - t0)
    c.close()
    done = [0]
    lock = threading.Lock()

    def worker(k):
        cc = http.client.HTTPConnection(host, int(port), timeout=5)
        n = 0
        for i in range(WRITES):
            cc.request("PUT", "/v1/kv/bench/tp/%d/%d" % (k, i % 50), b"v" * 64)
            r = cc.getresponse()
            r.read()
            if r.status == 200:
                n += 1
        cc.close()
        with lock:
            done[0] += n

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(CLIENTS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return lat, done[0] / (time.monotonic() - t0)


def main():
    if not os.path.exists(BIN):
        subprocess.check_call(["cargo", "build", "--release", "--bin", "ballast"])
    rows = []
    try:
        for n in (3, 5):
            agents = cluster("d%d" % n, n)
            leader(agents)
            d = bench_detect(agents)
            rows.append(("failure detection, %d agents" % n, d))
            for a in agents:
                a.kill9()
        agents = cluster("f", 3)
        f = bench_failover(agents)
        rows.append(("leader failover to accepted write, 3 servers", f))
        lat, tput = bench_kv(agents)
        rows.append(("KV PUT latency, sequential, 3 servers", lat))
        for a in agents:
            a.kill9()
    finally:
        for a in ALL:
            a.kill9()
        shutil.rmtree(ROOT, ignore_errors=True)
    os.makedirs("bench/out", exist_ok=True)
    csv = "bench/out/control-%s.csv" % time.strftime("%Y%m%d-%H%M%S")
    with open(csv, "w") as f:
        f.write("figure,n,p50_ms,p99_ms,max_ms\n")
        print("%-48s %5s %9s %9s %9s" % ("figure", "n", "p50 ms", "p99 ms", "max ms"))
        for name, xs in rows:
            ms = [x * 1000 for x in xs]
            line = (name, len(ms), pct(ms, 50), pct(ms, 99), max(ms))
            print("%-48s %5d %9.1f %9.1f %9.1f" % line)
            f.write("%s,%d,%.1f,%.1f,%.1f\n" % line)
        print("%-48s %5d %9.0f ops/s (%d clients)" % ("KV PUT throughput, 3 servers", CLIENTS * WRITES, tput, CLIENTS))
        f.write("KV PUT throughput ops/s,%d,%.0f,,\n" % (CLIENTS * WRITES, tput))
    print("saved", csv)


if __name__ == "__main__":
    main()
