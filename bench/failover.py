#!/usr/bin/env python3
"""Failover side by side: ballast agents against keepalived (VRRP) + HAProxy, in seed 004's
topology built from namespaces (scripts/seed_topo.sh). Not a test: it asserts nothing.

For each setup, TRIALS times:
  kill       the VIP's owner dies (every link down, then kill -9 of its daemons); the gap a
             client sees is the first answer after the death minus the last answer before
             (a new connection every 20 ms from the router, 0.9 s timeout each)
  graceful   the owner's daemon gets SIGTERM (ballast hands its VIPs over; keepalived
             sends priority 0): failed probes and the slowest answer
  drain      ballast only (`ballast device drain`): failed probes and the slowest answer
  partition  the switch stops carrying the owner's control link (both ends stay up, so no
             daemon sees a link go down) while its public link works, for 3 s:
             milliseconds during which both LBs held the VIP (sampled every ~10 ms) and
             failed probes

Setups: ballast (defaults), ballast-fast (Raft, lease and gossip timing for a quiet LAN; see
FAST), keepalived at its defaults (advert_int 1) and at its fastest
(VRRPv3, advert_int 0.01 s, the smallest it accepts); both keepalived setups run VRRP on the
control network (as ballast's gossip and Raft do) and HAProxy 2.6 on each LB with the same
listen section ballast serves (web1 and web2 behind the VIP, bind ... transparent).

usage: bench/failover.py [--trials N] [--only SETUP] [--out DIR]   (as root)
"""
import argparse
import contextlib
import csv
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOPO = os.path.join(ROOT, "scripts", "seed_topo.sh")
BALLAST = os.environ.get("BALLAST", os.path.join(ROOT, "target", "release", "ballast"))
P = "fo"
VIP = "198.51.100.100"
CTL = {"lb1": "10.99.0.11", "lb2": "10.99.0.12", "wit": "10.99.0.13"}
WORK = "/tmp/ballast-failover"


def sh(cmd, check=True):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{cmd}: {r.stdout}{r.stderr}")
    return r.stdout


def nsx(ns, cmd, check=True):
    return sh(f"ip netns exec {P}{ns} {cmd}", check)


def spawn(ns, cmd, log):
    return subprocess.Popen(
        f"exec ip netns exec {P}{ns} {cmd}", shell=True, stdout=open(log, "a"), stderr=subprocess.STDOUT
    )


def holds(ns):
    out = nsx(ns, "ip -4 -o addr show dev eth0", check=False)
    return f" {VIP}/32 " in out


def holder():
    h = [d for d in ("lb1", "lb2") if holds(d)]
    return h[0] if len(h) == 1 else None


def wait(what, cond, limit=60):
    end = time.time() + limit
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


# --- the client's probes: a subprocess in the router's namespace -----------------------

def probe_main(vip, max_s):
    """Runs in the router namespace: a new connection every 20 ms until SIGTERM (or max_s);
    prints [start, end, ok] per probe as JSON, one line each."""
    lock, stop = threading.Lock(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def one():
        start = time.time()
        ok = False
        try:
            s = socket.create_connection((vip, 80), timeout=0.9)
            s.settimeout(0.9)
            s.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n")
            head = s.recv(64)
            ok = head.startswith(b"HTTP/1.") and head[8:13] == b" 200 "
            s.close()
        except OSError:
            pass
        with lock:
            # One line per probe as it ends: a prober killed late still leaves its results.
            print(json.dumps((start, time.time(), ok)), flush=True)

    threads, t0, i = [], time.time(), 0
    while not stop.is_set() and time.time() - t0 < max_s:
        t = threading.Thread(target=one)
        t.start()
        threads.append(t)
        i += 1
        stop.wait(max(0.0, t0 + 0.02 * i - time.time()))
    for t in threads:
        t.join()


class Prober:
    def __init__(self, max_s=60):
        self.p = subprocess.Popen(
            ["ip", "netns", "exec", f"{P}rt", sys.executable, __file__, "--probe", VIP, str(max_s)],
            stdout=subprocess.PIPE,
            text=True,
        )

    def finish(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            out, _ = self.p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, _ = self.p.communicate()
        return sorted(tuple(json.loads(line)) for line in out.splitlines() if line.startswith("["))


def gap_ms(probes, at):
    """The client's outage: probes in start order; from the last answer before the first
    failure (at or after `at`) to the first answer after the last failure."""
    fails = [i for i, (s, e, ok) in enumerate(probes) if not ok and s >= at - 1]
    if not fails:
        return 0.0
    before = [e for s, e, ok in probes[: fails[0]] if ok]
    after = [e for s, e, ok in probes[fails[-1] + 1 :] if ok]
    if not before or not after:
        return None
    return (min(after) - max(before)) * 1000


# --- ballast -----------------------------------------------------------------------------

# The fast profile: Raft heartbeats every 50 ms, election timeouts of 100-200 ms (openraft
# elects after its leader lease, the max, plus one of them), leases of 700 ms renewed every
# 70 ms, gossip probes every 100 ms (50 ms timeout, down after two more periods). The
# defaults are 150 ms, 300-600 ms, 2 s / 200 ms, 300/150 ms x2.
FAST = (
    ', "raft": {"heartbeat_interval": "50ms", "election_timeout": "100ms"}, "lb": {"lease": "700ms"},'
    ' "gossip_lan": {"probe_interval": "100ms", "probe_timeout": "50ms", "suspicion_mult": 2}'
)


class Ballast:
    def __init__(self, fast=False, extra=""):
        self.name = "ballast-fast" if fast else "ballast"
        extra = (FAST if fast else "") + extra
        self.procs = {}
        self.key = sh(f"{BALLAST} keygen").strip()
        for d in ("lb1", "lb2", "wit"):
            # A new cluster per setup: an earlier setup's Raft state (its devices, its
            # replicated lease bound) must not carry over.
            sh(f"rm -rf {WORK}/{d}/data {WORK}/{d}.log")
            os.makedirs(f"{WORK}/{d}", exist_ok=True)
            join = ", ".join(f'"{ip}:8301"' for ip in CTL.values())
            with open(f"{WORK}/{d}/config.json", "w") as f:
                f.write(
                    f'{{ "server": true, "bootstrap_expect": 3, "bind_addr": "{CTL[d]}", "datacenter": "bench",'
                    f' "data_dir": "{WORK}/{d}/data", "encrypt": "{self.key}", "retry_join": [{join}] {extra} }}'
                )
            self.start(d)
        wait("a leader", lambda: ":" in nsx("ops", "curl -s -m 1 http://10.99.0.13:8500/v1/status/leader", False))
        for i, d in ((1, "lb1"), (2, "lb2")):
            first, last = (100, 149) if i == 1 else (150, 199)
            self.cli(
                f"device put {d} --range 198.51.100.{first}-198.51.100.{last} --public-iface eth0"
                f" --public-addr 198.51.100.1{i}/24 --private-iface eth1 --private-addr 10.10.0.1{i}/24"
            )
        self.cli("device put wit --witness")
        wait("devices alive", lambda: self.alive() == {"lb1", "lb2", "wit"})
        self.cli(f"group create acco01/web --listen 80:http --backend 10.10.0.21:80 --backend 10.10.0.22:80 --vip {VIP}")
        wait("the VIP held", holder)

    def cli(self, args):
        return nsx("ops", f"{BALLAST} {args} --http-addr 10.99.0.13:8500")

    def move_phases(self, at):
        """The newest VIP move's phases (detected, decided, ..., first_packet) in ms after
        `at`, as the cluster recorded them (wall clocks of one machine)."""
        try:
            events = json.loads(nsx("ops", "curl -s -m 2 http://10.99.0.13:8500/v1/lb/events", False))
        except (ValueError, TypeError):
            return {}
        moved = [e for e in events if e.get("kind") == "vip_moved"]
        if not moved:
            return {}
        return {f"{k}_ms": v - at * 1000 for k, v in moved[-1].get("phases", {}).items()}

    def alive(self):
        try:
            devs = json.loads(nsx("ops", "curl -s -m 2 http://10.99.0.13:8500/v1/lb/devices", False))
            return {d["name"] for d in devs if d.get("alive")}
        except (ValueError, TypeError):
            return set()

    def start(self, d):
        self.procs[d] = spawn(
            d,
            f"env RUST_LOG=info,openraft=warn {BALLAST} agent -config-file {WORK}/{d}/config.json -node {d}",
            f"{WORK}/{d}.log",
        )

    def owner(self):
        for line in self.cli("vip list").splitlines():
            if line.startswith(VIP):
                return line.split()[2]

    def kill(self, d):
        self.procs[d].kill()
        self.procs[d].wait()

    def term(self, d):
        self.procs[d].terminate()

    def restore(self, d, links=("eth0", "eth1", "eth2")):
        # Like a machine that boots again: the agent starts before its links are up.
        if self.procs[d].poll() is not None:
            self.start(d)
            time.sleep(0.5)
        for nic in links:
            nsx(d, f"ip link set {nic} up")
        wait(f"{d} alive", lambda: d in self.alive())
        # Back to active if a graceful stop left it draining.
        self.cli(f"device undrain {d}")
        time.sleep(1)

    def stop(self):
        for p in self.procs.values():
            p.kill()
            p.wait()


# --- keepalived + HAProxy ----------------------------------------------------------------

HAPROXY_CFG = f"""global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
listen acco01-web
    bind {VIP}:80 transparent
    balance roundrobin
    server web1 10.10.0.21:80
    server web2 10.10.0.22:80
"""


class Keepalived:
    def move_phases(self, at):
        return {}

    def __init__(self, fast):
        self.fast = fast
        self.name = "keepalived-fastest" if fast else "keepalived-default"
        self.procs = {}
        with open(f"{WORK}/haproxy.cfg", "w") as f:
            f.write(HAPROXY_CFG)
        for i, d in ((1, "lb1"), (2, "lb2")):
            advert = "version 3\n    advert_int 0.01" if fast else "advert_int 1"
            with open(f"{WORK}/keepalived-{d}.conf", "w") as f:
                f.write(
                    f"global_defs {{\n    router_id {d}\n}}\n"
                    f"vrrp_instance VI_1 {{\n    state BACKUP\n    interface eth2\n    virtual_router_id 51\n"
                    f"    priority {200 - i}\n    nopreempt\n    {advert}\n"
                    f"    virtual_ipaddress {{\n        {VIP}/32 dev eth0\n    }}\n}}\n"
                )
            self.start(d)
        wait("the VIP held", holder)

    def start(self, d):
        sh(f"rm -f {WORK}/ka-{d}.pid {WORK}/vrrp-{d}.pid")
        h = spawn(d, f"haproxy -db -f {WORK}/haproxy.cfg", f"{WORK}/haproxy-{d}.log")
        k = spawn(
            d,
            f"keepalived -n -l -D -f {WORK}/keepalived-{d}.conf -p {WORK}/ka-{d}.pid"
            f" -r {WORK}/vrrp-{d}.pid",
            f"{WORK}/keepalived-{d}.log",
        )
        self.procs[d] = (h, k)

    def owner(self):
        return holder()

    def kill(self, d):
        for p in self.procs[d]:
            p.kill()
            p.wait()
        # keepalived's VRRP child outlives its parent: kill whatever runs in the namespace.
        sh(f"ip netns pids {P}{d} | xargs -r kill -9", check=False)
        nsx(d, f"ip addr del {VIP}/32 dev eth0", check=False)

    def term(self, d):
        self.procs[d][1].terminate()

    def restore(self, d, links=("eth0", "eth1", "eth2")):
        h, k = self.procs[d]
        if h.poll() is not None or k.poll() is not None:
            self.kill(d)
            self.start(d)
            time.sleep(0.5)
        for nic in links:
            nsx(d, f"ip link set {nic} up")
        time.sleep(4 if not self.fast else 1)
        wait("one holder", holder)

    def stop(self):
        for d in list(self.procs):
            self.kill(d)


# --- scenarios -----------------------------------------------------------------------------

def run_kill(lb):
    owner = lb.owner()
    pr = Prober()
    time.sleep(0.5)
    # Like a power cut: the links go first, so nothing the dying daemons send (keepalived's
    # VRRP child sends a priority 0 advert when its parent dies) reaches anyone.
    at = time.time()
    for nic in ("eth2", "eth0", "eth1"):
        nsx(owner, f"ip link set {nic} down")
    lb.kill(owner)
    other = "lb2" if owner == "lb1" else "lb1"
    wait("the survivor", lambda: holds(other), 30)
    time.sleep(1.5)
    probes = pr.finish()
    dump(probes, at, "kill")
    r = {"gap_ms": gap_ms(probes, at), "failed": sum(1 for p in probes if not p[2])}
    # Where the outage sits: its failed probes' starts, relative to the power cut.
    fails = [s for s, e, ok in probes if not ok and s >= at - 1]
    if fails:
        r.update(first_fail_ms=(fails[0] - at) * 1000, last_fail_ms=(fails[-1] - at) * 1000)
    r.update(lb.move_phases(at))
    lb.restore(owner)
    return r


def dump(probes, at, what):
    """With FAILOVER_DUMP=FILE: every probe of the trial, relative to the action at `at`
    (start ms, duration ms, ok), one line per trial."""
    if os.environ.get("FAILOVER_DUMP"):
        with open(os.environ["FAILOVER_DUMP"], "a") as f:
            f.write(json.dumps([what] + [(round((s - at) * 1000), round((e - s) * 1000), ok) for s, e, ok in probes]) + "\n")


def run_soft(lb, how):
    owner = lb.owner()
    other = "lb2" if owner == "lb1" else "lb1"
    pr = Prober()
    time.sleep(0.5)
    at = time.time()
    if how == "drain":
        lb.cli(f"device drain {owner}")
    else:
        lb.term(owner)
    wait("the other holder", lambda: holds(other) and not holds(owner), 30)
    time.sleep(1.5)
    probes = pr.finish()
    dump(probes, at, how)
    if how == "drain":
        lb.cli(f"device undrain {owner}")
        time.sleep(1)
    else:
        lb.restore(owner)
    return {
        "failed": sum(1 for p in probes if not p[2]),
        "slowest_ms": max([(e - s) * 1000 for s, e, ok in probes if ok] or [0]),
    }


def run_partition(lb):
    owner = lb.owner()
    pr = Prober()
    time.sleep(0.5)
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append((time.time(), holds("lb1"), holds("lb2")))

    t = threading.Thread(target=sample)
    t.start()
    sh(f"bash {TOPO} cut {P} {owner} eth2")
    time.sleep(3)
    sh(f"bash {TOPO} heal {P} {owner} eth2")
    time.sleep(2)
    stop.set()
    t.join()
    probes = pr.finish()
    dual = 0.0
    for (t0, a, b), (t1, _, _) in zip(samples, samples[1:]):
        if a and b:
            dual += t1 - t0
    lb.restore(owner, links=())
    return {
        "dual_owner_ms": dual * 1000,
        "dual_samples": sum(1 for _, a, b in samples if a and b),
        "failed": sum(1 for p in probes if not p[2]),
    }


def pct(values, q):
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    return v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))]


@contextlib.contextmanager
def seed_topology():
    """Seed 004's topology with web1..web4 answering their names on port 80; yields a list
    the caller appends its load balancer to (stopped first on the way out), then tears
    everything down, also on failure."""
    sh(f"bash {TOPO} up {P}")
    sh(f"rm -rf {WORK} && mkdir -p {WORK}")
    webs, lbs = [], []
    try:
        for i in range(1, 5):
            os.makedirs(f"{WORK}/www{i}", exist_ok=True)
            with open(f"{WORK}/www{i}/index.html", "w") as f:
                f.write(f"web{i}\n")
            webs.append(spawn(f"web{i}", f"python3 -m http.server 80 --directory {WORK}/www{i}", "/dev/null"))
        yield lbs
    finally:
        for lb in lbs:
            lb.stop()
        for w in webs:
            w.kill()
        sh(f"bash {TOPO} down {P}", check=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--only", default="")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rows = []
    setups = [("ballast", Ballast), ("ballast-fast", lambda: Ballast(True)), ("keepalived-default", lambda: Keepalived(False)), ("keepalived-fastest", lambda: Keepalived(True))]
    for name, make in setups:
        if a.only and a.only != name:
            continue
        with seed_topology() as lbs:
            lb = make()
            lbs.append(lb)
            scenarios = [("kill", run_kill), ("graceful", lambda l: run_soft(l, "graceful"))]
            if name.startswith("ballast"):
                scenarios.append(("drain", lambda l: run_soft(l, "drain")))
            scenarios.append(("partition", run_partition))
            for scen, fn in scenarios:
                for trial in range(a.trials):
                    r = fn(lb)
                    r.update(setup=name, scenario=scen, trial=trial)
                    print(json.dumps(r), flush=True)
                    rows.append(r)
    keys = ["setup", "scenario", "trial", "gap_ms", "failed", "slowest_ms", "dual_owner_ms", "dual_samples",
            "first_fail_ms", "last_fail_ms", "detected_ms", "decided_ms", "committed_ms", "address_added_ms",
            "arp_sent_ms", "first_packet_ms"]
    path = os.path.join(a.out, "failover.csv")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in keys})
    print(f"\n{'setup':<20} {'scenario':<10} {'p50':>8} {'p99':>8}  other")
    for name, _ in setups:
        for scen in ("kill", "graceful", "drain", "partition"):
            rs = [r for r in rows if r["setup"] == name and r["scenario"] == scen]
            if not rs:
                continue
            if scen == "kill":
                g = [r["gap_ms"] for r in rs]
                print(f"{name:<20} {scen:<10} {pct(g, 50) or 0:>8.0f} {pct(g, 99) or 0:>8.0f}  gap ms; failed probes p50 {pct([r['failed'] for r in rs], 50)}")
                phases = [k for k in ("detected_ms", "decided_ms", "first_packet_ms", "last_fail_ms") if any(k in r for r in rs)]
                if phases:
                    print(" " * 31 + "p50 after the cut: " + ", ".join(f"{k[:-3]} {pct([r[k] for r in rs if k in r], 50):.0f} ms" for k in phases))
            elif scen == "partition":
                d = [r["dual_owner_ms"] for r in rs]
                print(f"{name:<20} {scen:<10} {pct(d, 50):>8.0f} {pct(d, 99):>8.0f}  dual-owner ms; trials with dual owners {sum(1 for x in d if x > 0)}/{len(d)}")
            else:
                s = [r["slowest_ms"] for r in rs]
                print(f"{name:<20} {scen:<10} {pct(s, 50):>8.0f} {pct(s, 99):>8.0f}  slowest probe ms; failed probes total {sum(r['failed'] for r in rs)}")
    print(f"CSV: {path}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--probe":
        probe_main(sys.argv[2], float(sys.argv[3]))
    else:
        main()
