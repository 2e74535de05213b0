#!/usr/bin/env python3
"""Scale-out reaction in seed 004's topology (namespaces, scripts/seed_topo.sh), with
failover.py's cluster and prober. Not a test: it asserts nothing.

Each trial: the group acco01/web has one VIP; a client in the router's namespace starts
opening a new connection to it every 20 ms (about 50 new connections/s against a threshold
of 15/s that must hold for `sustain` = 2 s). Measured from the load's start:
  decided     the leader's scaled_out event (its `decided` phase)
  address     the extra VIP's address up on the other device
  serving     the first HTTP answer through the extra VIP (curl from the router)
  dns         the agents' DNS answering both VIPs for web.acco01.ballast
Then the load stops and the trial waits for the scale-in (hold-down 4 s, drain 6 s) and the
extra VIP's removal before the next. The sustain time is part of every figure: a device
must be over its threshold that long before anything moves (hysteresis, by design).

usage: bench/scaleout.py [--trials N] [--out DIR]   (as root, after cargo build --release)
"""
import argparse
import csv
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import failover as fo  # noqa: E402

SCALE = (
    ', "lb": {"scale": {"conn_rate": 15, "cpu": 0, "sustain": "2s", "hold_down": "4s",'
    ' "drain": "6s", "max_vips": 2}}'
)
API = "http://10.99.0.13:8500"


def api(path):
    out = fo.nsx("ops", f"curl -s -m 2 {API}{path}", check=False)
    try:
        return json.loads(out)
    except ValueError:
        return None


def group_vips():
    return [v for v in (api("/v1/lb/vips") or []) if v.get("group") == "acco01/web"]


def extra_vip():
    return next((v for v in group_vips() if v["vip"] != fo.VIP), None)


def holds(ns, vip):
    return f" {vip}/32 " in fo.nsx(ns, "ip -4 -o addr show", check=False)


def trial(lb):
    owner = lb.owner()
    other = "lb2" if owner == "lb1" else "lb1"
    t0 = time.time()
    pr = fo.Prober(max_s=60)
    marks = {}
    end = t0 + 45
    extra = None
    while time.time() < end and len(marks) < 4:
        now = time.time()
        if extra is None:
            v = extra_vip()
            if v:
                extra = v["vip"]
        if extra:
            if "decided" not in marks:
                ev = [e for e in (api("/v1/lb/events") or []) if e.get("kind") == "scaled_out" and e.get("vip") == extra]
                if ev and "decided" in ev[-1].get("phases", {}):
                    marks["decided"] = ev[-1]["phases"]["decided"] / 1000 - t0
            if "address" not in marks and holds(other, extra):
                marks["address"] = now - t0
            if "serving" not in marks and fo.nsx("rt", f"curl -s -m 0.5 -o /dev/null -w %{{http_code}} http://{extra}/", check=False) == "200":
                marks["serving"] = time.time() - t0
            if "dns" not in marks:
                got = fo.nsx("ops", "dig @10.99.0.13 -p 8600 +short +time=1 +tries=1 web.acco01.ballast A", check=False).split()
                if set(got) == {fo.VIP, extra}:
                    marks["dns"] = time.time() - t0
        time.sleep(0.05)
    pr.finish()
    # Quiet: wait for the scale-in to take the extra VIP away before the next trial.
    fo.wait("the scale-in", lambda: extra is None or not extra_vip(), 90)
    return {k: round(v * 1000) for k, v in marks.items()} | {"extra": extra}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(fo.ROOT, "bench", "out"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rows = []
    with fo.seed_topology() as lbs:
        lb = fo.Ballast(extra=SCALE)
        lbs.append(lb)
        for t in range(a.trials):
            r = trial(lb)
            r["trial"] = t
            print(json.dumps(r), flush=True)
            rows.append(r)
    keys = ["trial", "decided", "address", "serving", "dns", "extra"]
    path = os.path.join(a.out, "scaleout.csv")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in keys})
    print(f"\n{'from the load start to':<24} {'p50 ms':>8} {'max ms':>8}")
    for k in keys[1:5]:
        v = [r[k] for r in rows if k in r]
        print(f"{k:<24} {fo.pct(v, 50) or 0:>8} {max(v) if v else 0:>8}   ({len(v)}/{len(rows)} trials)")
    print(f"CSV: {path}")


if __name__ == "__main__":
    main()
