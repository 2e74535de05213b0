#!/usr/bin/env python3
"""Builds a GNS3 project's topology in network namespaces. Python 3 standard library only;
run as root (ip, ethtool, sysctl).

    gns3/run-topology.py up PREFIX       build it (deletes an earlier one with this prefix first)
    gns3/run-topology.py --vm lb1,lb2 up PREFIX
                                         the hybrid tier: those nodes get no namespace; each of
                                         their links is a tap NODE-IFACE on its switch's bridge,
                                         for a VM (qemu run in the switch namespace) to attach
    gns3/run-topology.py down PREFIX     delete every namespace named PREFIX* (kills what runs in them)
    gns3/run-topology.py check           read and cross-check the project and sidecar; no root needed
    gns3/run-topology.py show PREFIX     namespaces, addresses and routes of a running topology
    gns3/run-topology.py dump PREFIX     a normalized description of PREFIX*'s namespaces, to
                                         compare with one scripts/seed_topo.sh built
    gns3/run-topology.py ping PREFIX     one ping between every pair of nodes that should reach each other
    gns3/run-topology.py cut PREFIX NS IFACE    partition: NS's IFACE taken off its switch's bridge
    gns3/run-topology.py heal PREFIX NS IFACE   put it back
    gns3/run-topology.py configs DIR     first-boot files for a by-hand GNS3 run (see gns3/README.md)

Options (before the subcommand): --project FILE (default gns3/seed004.gns3), --sidecar FILE
(default: FILE with .gns3 replaced by .addresses.json), --vm NODE,... (up and ping: nodes that
are VMs on taps, see gns3/hybrid-test.sh).

Mapping, the same as scripts/seed_topo.sh builds by hand:
  * every ethernet_switch (or ethernet_hub) node -> a Linux bridge of the same name inside one
    switch namespace PREFIX+sw (sidecar netns.switch_namespace), STP off, forward delay 0;
  * every other node -> a namespace PREFIX+NAME, loopback up, rp_filter off;
  * every link node<->switch -> a veth pair: the node's end is named as the sidecar says for
    that adapter (eth0, eth1, eth2), the switch's end BRIDGE+N with N counting links in the
    sidecar's order (pub1, prv2, pub3, ... exactly seed_topo.sh's names), GRO on at the switch
    end (XDP-redirected frames into a veth are delivered only then);
  * addresses, default routes, ip_forward and tx checksum offload from the sidecar.
Links between two non-switch nodes become a direct veth pair (none in seed 004).
`up` cleans up after itself if any step fails.
"""
import argparse
import ipaddress
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SWITCH_TYPES = ("ethernet_switch", "ethernet_hub")
VERBOSE = os.environ.get("VERBOSE") == "1"


class TopologyError(Exception):
    pass


# --- reading and cross-checking ---------------------------------------------------------------


def load(project_path, sidecar_path):
    """Returns the plan: switches, namespaced nodes (in the sidecar's order) and the links in
    creation order, each link as (node, iface dict, switch name or peer, switch port name)."""
    with open(project_path, encoding="utf-8") as f:
        proj = json.load(f)
    with open(sidecar_path, encoding="utf-8") as f:
        side = json.load(f)
    if proj.get("type") != "topology" or "topology" not in proj:
        raise TopologyError(f"{project_path}: not a GNS3 project file")
    topo = proj["topology"]
    by_id, by_name = {}, {}
    for n in topo.get("nodes", []):
        if n["name"] in by_name:
            raise TopologyError(f"two nodes named {n['name']}")
        by_id[n["node_id"]] = n
        by_name[n["name"]] = n
    switches = [n["name"] for n in topo["nodes"] if n["node_type"] in SWITCH_TYPES]
    hosts = [n["name"] for n in topo["nodes"] if n["node_type"] not in SWITCH_TYPES]
    side_nodes = {s["name"]: s for s in side["nodes"]}
    sw_ns = side.get("netns", {}).get("switch_namespace", "sw")
    if sw_ns in by_name:
        raise TopologyError(f"a node is named {sw_ns}, the switch namespace's name")
    for h in hosts:
        if h not in side_nodes:
            raise TopologyError(f"node {h} of the project has no entry in the sidecar")
    for s in side_nodes:
        if s not in by_name:
            raise TopologyError(f"sidecar node {s} is not in the project")
        if by_name[s]["node_type"] in SWITCH_TYPES:
            raise TopologyError(f"sidecar node {s} is a switch in the project")
    for seg in side.get("segments", {}):
        if seg not in switches:
            raise TopologyError(f"sidecar segment {seg} is no switch node of the project")

    # Each end of each link: (node name, adapter, port) -> the other end.
    ends = {}
    for l in topo.get("links", []):
        if len(l.get("nodes", [])) != 2:
            raise TopologyError(f"link {l.get('link_id')} does not join two nodes")
        a, b = l["nodes"]
        for x in (a, b):
            if x["node_id"] not in by_id:
                raise TopologyError(f"link {l['link_id']} names an unknown node {x['node_id']}")
        na, nb = by_id[a["node_id"]], by_id[b["node_id"]]
        for me, other, mine, theirs in ((na, nb, a, b), (nb, na, b, a)):
            key = (me["name"], mine["adapter_number"], mine["port_number"])
            if key in ends:
                raise TopologyError(f"{me['name']} adapter {key[1]} port {key[2]} has two links")
            ends[key] = (other, theirs, l["link_id"])
            if me["node_type"] == "qemu":
                adapters = me.get("properties", {}).get("adapters", 1)
                if mine["adapter_number"] >= adapters:
                    raise TopologyError(f"{me['name']}: link on adapter {mine['adapter_number']}, "
                                        f"but the node has {adapters} adapters")
            if me["node_type"] in SWITCH_TYPES:
                ports = [p["port_number"] for p in me.get("properties", {}).get("ports_mapping", [])]
                if ports and mine["port_number"] not in ports:
                    raise TopologyError(f"switch {me['name']} has no port {mine['port_number']}")

    links, used, counter = [], set(), 0
    for s in side["nodes"]:
        names = set()
        for i in s["interfaces"]:
            if i["name"] in names:
                raise TopologyError(f"{s['name']}: two interfaces named {i['name']}")
            names.add(i["name"])
            if len(i["name"]) > 15:
                raise TopologyError(f"{s['name']}: interface name {i['name']} too long")
            key = (s["name"], i["adapter"], 0)
            if key not in ends:
                raise TopologyError(f"{s['name']} {i['name']} (adapter {i['adapter']}): no link in the project")
            other, theirs, link_id = ends[key]
            used.add(link_id)
            if other["node_type"] in SWITCH_TYPES:
                seg = other["name"]
                if i.get("segment") not in (None, seg):
                    raise TopologyError(f"{s['name']} {i['name']}: the sidecar says segment {i['segment']}, "
                                        f"the project links it to {seg}")
                counter += 1
                links.append({"node": s["name"], "iface": i, "switch": seg, "port": f"{seg}{counter}",
                              "switch_port_number": theirs["port_number"]})
            else:
                peer = side_nodes[other["name"]]
                pi = [x for x in peer["interfaces"] if x["adapter"] == theirs["adapter_number"]]
                if not pi:
                    raise TopologyError(f"{other['name']} adapter {theirs['adapter_number']}: not in the sidecar")
                if not any(x["node"] == other["name"] and x["iface"]["name"] == pi[0]["name"] for x in links):
                    links.append({"node": s["name"], "iface": i, "peer": other["name"], "peer_iface": pi[0]["name"]})
            if i.get("address"):
                ipaddress.ip_interface(i["address"])  # raises ValueError when malformed
    for l in topo.get("links", []):
        if l["link_id"] not in used:
            a, b = (by_id[x["node_id"]]["name"] for x in l["nodes"])
            raise TopologyError(f"link {a}<->{b} ({l['link_id']}): no sidecar interface describes it")
    for s in side["nodes"]:
        for r in s.get("routes", []):
            ipaddress.ip_address(r["via"])
    return {
        "project": proj, "sidecar": side, "switch_ns": sw_ns, "switches": switches,
        "nodes": [s["name"] for s in side["nodes"]], "links": links, "node_info": side_nodes,
        "gns3_nodes": by_name,
    }


# --- running commands ---------------------------------------------------------------------------


def run(*cmd, check=True, quiet=False):
    if VERBOSE:
        print("+", " ".join(cmd), file=sys.stderr)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise TopologyError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def nsx(ns, *cmd, check=True):
    return run("ip", "netns", "exec", ns, *cmd, check=check)


def namespaces():
    out = run("ip", "netns", "list")
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def down(prefix):
    if not prefix:
        raise TopologyError("empty prefix")
    gone = []
    for ns in namespaces():
        if not ns.startswith(prefix):
            continue
        pids = run("ip", "netns", "pids", ns, check=False).split()
        for pid in pids:
            try:
                os.kill(int(pid), 9)
            except (ProcessLookupError, ValueError):
                pass
        run("ip", "netns", "del", ns, check=False)
        gone.append(ns)
    return gone


def vm_tap(node, iface):
    """The tap a VM node's interface attaches to (in the switch namespace)."""
    name = f"{node}-{iface}"
    if len(name) > 15:
        raise TopologyError(f"tap name {name} too long (15 characters at most)")
    return name


def up(plan, prefix, vms=()):
    side = plan["sidecar"]
    for v in vms:
        if v not in plan["nodes"]:
            raise TopologyError(f"--vm {v}: no such node in the sidecar")
        if plan["node_info"][v].get("kind") != "ballast":
            raise TopologyError(f"--vm {v}: only ballast nodes boot as appliance VMs")
    knobs = side.get("netns", {})
    rp = str(knobs.get("rp_filter", 0))
    swns = prefix + plan["switch_ns"]
    down(prefix)
    try:
        for ns in [swns] + [prefix + n for n in plan["nodes"] if n not in vms]:
            run("ip", "netns", "add", ns)
            nsx(ns, "ip", "link", "set", "lo", "up")
            nsx(ns, "sysctl", "-qw", f"net.ipv4.conf.all.rp_filter={rp}", f"net.ipv4.conf.default.rp_filter={rp}")
        for br in plan["switches"]:
            nsx(swns, "ip", "link", "add", br, "type", "bridge")
            nsx(swns, "ip", "link", "set", br, "type", "bridge",
                "stp_state", "1" if knobs.get("bridge_stp") else "0",
                "forward_delay", str(knobs.get("bridge_forward_delay", 0)))
            nsx(swns, "ip", "link", "set", br, "up")
        for l in plan["links"]:
            ns, ifc = prefix + l["node"], l["iface"]
            if l["node"] in vms or l.get("peer") in vms:
                if "switch" not in l:
                    raise TopologyError(f"{l['node']} {ifc['name']}: a VM's link must go to a switch")
                tap = vm_tap(l["node"], ifc["name"])
                nsx(swns, "ip", "tuntap", "add", tap, "mode", "tap")
                nsx(swns, "ip", "link", "set", tap, "master", l["switch"], "up")
                continue
            if "switch" in l:
                run("ip", "link", "add", ifc["name"], "netns", ns, "type", "veth",
                    "peer", "name", l["port"], "netns", swns)
                nsx(swns, "ip", "link", "set", l["port"], "master", l["switch"], "up")
                if knobs.get("switch_port_gro", True):
                    nsx(swns, "ethtool", "-K", l["port"], "gro", "on")
            else:
                peer_ns = prefix + l["peer"]
                run("ip", "link", "add", ifc["name"], "netns", ns, "type", "veth",
                    "peer", "name", l["peer_iface"], "netns", peer_ns)
                pinfo = [x for x in plan["node_info"][l["peer"]]["interfaces"] if x["name"] == l["peer_iface"]][0]
                if pinfo.get("address"):
                    nsx(peer_ns, "ip", "addr", "add", pinfo["address"], "dev", pinfo["name"])
                nsx(peer_ns, "ip", "link", "set", pinfo["name"], "up")
            if ifc.get("address"):
                nsx(ns, "ip", "addr", "add", ifc["address"], "dev", ifc["name"])
            nsx(ns, "ip", "link", "set", ifc["name"], "up")
        for name in plan["nodes"]:
            if name in vms:
                continue  # the VM sets its own addresses and routes from its config disk
            info, ns = plan["node_info"][name], prefix + name
            if info.get("ip_forward"):
                nsx(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            for i in info["interfaces"]:
                if i.get("tx_checksum_offload") is False:
                    nsx(ns, "ethtool", "-K", i["name"], "tx", "off")
            for r in info.get("routes", []):
                nsx(ns, "ip", "route", "add", r["to"], "via", r["via"])
    except BaseException:
        down(prefix)
        raise


def switch_port(prefix, plan, node, iface):
    """The switch port at the other end of NODE's IFACE (`eth2@if12`: index 12 in the switch)."""
    out = nsx(prefix + node, "ip", "-o", "link", "show", iface)
    head = out.split(":")[1].strip()
    if "@if" not in head:
        raise TopologyError(f"{node} {iface} is not a veth")
    peer = head.split("@if")[1]
    for line in nsx(prefix + plan["switch_ns"], "ip", "-o", "link", "show").splitlines():
        idx, rest = line.split(":", 1)
        if idx.strip() == peer:
            return rest.strip().split("@")[0]
    raise TopologyError(f"no switch port for {node} {iface}")


def dump(prefix):
    """A normalized description of every namespace PREFIX*: interfaces (kind, bridge, state,
    IPv4 addresses, GRO and tx checksum offload), bridges' STP and forward delay, IPv4 routes,
    ip_forward and rp_filter. Two topologies built alike dump alike, whoever built them (the
    runner, scripts/seed_topo.sh): interface indexes and MAC addresses are left out."""
    lines = []
    for ns in sorted(n for n in namespaces() if n.startswith(prefix)):
        lines.append(f"[{ns[len(prefix):]}]")
        links = json.loads(nsx(ns, "ip", "-j", "-d", "link", "show") or "[]")
        addrs = {a["ifname"]: a for a in json.loads(nsx(ns, "ip", "-j", "-4", "addr", "show") or "[]")}
        for l in sorted(links, key=lambda l: l["ifname"]):
            name = l["ifname"]
            if name == "lo":
                continue
            kind = l.get("linkinfo", {}).get("info_kind", "")
            ips = sorted(f"{a['local']}/{a['prefixlen']}" for a in addrs.get(name, {}).get("addr_info", []))
            feats = {}
            for fl in nsx(ns, "ethtool", "-k", name, check=False).splitlines():
                k, _, v = fl.strip().partition(":")
                if k in ("generic-receive-offload", "tx-checksumming"):
                    feats[k] = v.strip().split()[0] if v.strip() else ""
            extra = ""
            if kind == "bridge":
                data = l.get("linkinfo", {}).get("info_data", {})
                extra = f" stp={data.get('stp_state')} forward_delay={data.get('forward_delay')}"
            up_ = "UP" in l.get("flags", [])
            lines.append(f"  {name} {kind} master={l.get('master', '-')} up={up_} addr={','.join(ips) or '-'} "
                         f"gro={feats.get('generic-receive-offload')} tx={feats.get('tx-checksumming')}{extra}")
        for r in sorted(json.loads(nsx(ns, "ip", "-j", "-4", "route", "show") or "[]"), key=lambda r: r["dst"]):
            lines.append(f"  route {r['dst']} via={r.get('gateway', '-')} dev={r.get('dev')}")
        sysctls = nsx(ns, "sysctl", "-n", "net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter",
                      "net.ipv4.conf.default.rp_filter").split()
        lines.append(f"  ip_forward={sysctls[0]} rp_filter(all,default)={sysctls[1]},{sysctls[2]}")
    return "\n".join(lines)


def ping_matrix(plan, prefix, vms=()):
    """One ICMP echo (1 s timeout) from each node to every address it should reach: every
    other node on a shared segment, and, through its default route, every address of a node
    that can answer back (one with a default route, or a router). Only addresses inside the
    namespaces of this topology (VM nodes are pinged, not pinged from). Returns (passed,
    failed lines)."""
    info = plan["node_info"]
    segs = {n: {i["segment"] for i in info[n]["interfaces"]} for n in plan["nodes"]}
    routed = {n for n in plan["nodes"] if info[n].get("ip_forward") or
              any(r["to"] == "default" for r in info[n].get("routes", []))}
    # Segments a router (ip_forward) is on: reachable through a default route.
    routed_segs = {g for n in plan["nodes"] if info[n].get("ip_forward") for g in segs[n]}
    pairs = []
    for s in plan["nodes"]:
        if s in vms:
            continue
        has_default = any(r["to"] == "default" for r in info[s].get("routes", []))
        for t in plan["nodes"]:
            if t == s:
                continue
            for i in info[t]["interfaces"]:
                if i["segment"] in segs[s] or (has_default and t in routed and i["segment"] in routed_segs):
                    pairs.append((s, t, i["address"].split("/")[0]))
    procs = [(s, t, ip, subprocess.Popen(["ip", "netns", "exec", prefix + s, "ping", "-c1", "-W1", "-q", ip],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
             for s, t, ip in pairs]
    failed = []
    for s, t, ip, p in procs:
        if p.wait(timeout=10) != 0:
            failed.append(f"{s} -> {t} {ip}")
    return len(procs) - len(failed), failed


def show(plan, prefix):
    for name in [plan["switch_ns"]] + plan["nodes"]:
        ns = prefix + name
        print(f"== {ns}")
        print(nsx(ns, "ip", "-br", "addr", check=False).rstrip())
        routes = nsx(ns, "ip", "route", check=False).rstrip()
        if routes:
            print("   routes: " + "; ".join(routes.splitlines()))


# --- first-boot files for a by-hand GNS3 run --------------------------------------------------


def configs(plan, outdir):
    """ballast.conf for each ballast node (a config disk's content: images/mkcfgdisk.sh), and a
    shell script for each Debian host that sets its addresses (paste it on the node's console)."""
    import base64
    os.makedirs(outdir, exist_ok=True)
    side = plan["sidecar"]
    key_path = os.path.join(outdir, "gossip.key")
    if os.path.exists(key_path):
        with open(key_path) as f:
            key = f.read().strip()
    else:
        key = base64.b64encode(os.urandom(32)).decode()
        with open(key_path, "w") as f:
            f.write(key + "\n")
    voters = [s for s in side["nodes"] if s.get("kind") == "ballast"]
    join = [f"{s['ballast']['bind']}:8301" for s in voters]
    written = []
    for s in side["nodes"]:
        name = s["name"]
        gnode = plan["gns3_nodes"][name]
        fmt = gnode.get("port_name_format") or "eth{0}"
        if s.get("kind") == "ballast":
            lines = [f"# ballast first-boot settings for {name} ({s.get('seed004', '')})",
                     "# Make a config disk: images/mkcfgdisk.sh " + name + "-cfg.img " + name + ".conf",
                     "# and set it as the GNS3 node's HDB disk image.",
                     f"node={name}", f"role={s['ballast']['role']}"]
            lines += [f"addr={i['name']}:{i['address']}" for i in s["interfaces"]]
            for r in s.get("routes", []):
                if r["to"] == "default":
                    lines.append(f"gw={r['via']}")
            lines += [f"bind={s['ballast']['bind']}", f"join={','.join(join)}", f"encrypt={key}",
                      f"bootstrap_expect={len(voters)}", "datacenter=seed004", "server=true"]
            # The node declares itself in the LB state once there is a leader (a device with
            # its public and private NICs and VIP range, or a witness).
            lines.append("register=true")
            if s["ballast"]["role"] == "device":
                roles = {i["name"]: side["segments"][i["segment"]]["role"] for i in s["interfaces"]}
                for want in ("public", "private"):
                    nic = [n for n, r in roles.items() if r == want]
                    if len(nic) != 1:
                        raise TopologyError(f"{name}: needs exactly one {want} interface, has {nic}")
                    lines.append(f"{want}={nic[0]}")
                lines.append(f"vip_range={s['ballast']['vip_range']}")
            path = os.path.join(outdir, f"{name}.conf")
        else:
            lines = [f"# {name}: {s.get('seed004', s['role'])}. Paste on the node's console as root",
                     "# (GNS3's Debian appliance: user debian, password debian, then sudo -s)."]
            for i in s["interfaces"]:
                guest = guest_port_name(fmt, i["adapter"])
                lines += [f"ip link set {guest} up", f"ip addr replace {i['address']} dev {guest}"]
            for r in s.get("routes", []):
                lines.append(f"ip route replace {r['to']} via {r['via']}")
            if s.get("ip_forward"):
                lines.append("sysctl -qw net.ipv4.ip_forward=1")
            lines.append("sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0")
            if s["role"] == "web":
                lines += [f"mkdir -p /srv/www && echo '{name} ({s['interfaces'][0]['address'].split('/')[0]})' > /srv/www/index.html",
                          "nohup python3 -m http.server 80 --bind 0.0.0.0 --directory /srv/www >/dev/null 2>&1 &"]
            path = os.path.join(outdir, f"{name}.sh")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        written.append(path)
    return written


def guest_port_name(fmt, adapter):
    """GNS3's port name for an adapter: eth{0} -> eth0; ens{port4} -> ens4 (adapter + 4)."""
    out = fmt
    if "{port" in fmt:
        start = fmt.index("{port") + 5
        end = fmt.index("}", start)
        out = fmt[:start - 5] + str(adapter + int(fmt[start:end])) + fmt[end + 1:]
    return out.replace("{0}", str(adapter)).replace("{port0}", str(adapter))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", default=os.path.join(HERE, "seed004.gns3"))
    ap.add_argument("--sidecar")
    ap.add_argument("--vm", default="", help="comma-separated nodes that are VMs on taps (up, ping)")
    ap.add_argument("cmd", choices=["up", "down", "check", "show", "dump", "ping", "cut", "heal", "configs"])
    ap.add_argument("args", nargs="*")
    a = ap.parse_args()
    sidecar = a.sidecar or os.path.splitext(a.project)[0] + ".addresses.json"
    try:
        if a.cmd == "dump":
            if len(a.args) != 1:
                ap.error("dump PREFIX")
            print(dump(a.args[0]))
            return 0
        if a.cmd == "down":
            if len(a.args) != 1:
                ap.error("down PREFIX")
            gone = down(a.args[0])
            print(f"deleted {len(gone)} namespaces")
            return 0
        plan = load(a.project, sidecar)
        if a.cmd == "check":
            print(f"{os.path.basename(a.project)} + {os.path.basename(sidecar)}: {len(plan['nodes'])} namespaced nodes, "
                  f"{len(plan['switches'])} switches ({', '.join(plan['switches'])}), {len(plan['links'])} links: consistent")
            return 0
        if a.cmd == "configs":
            if len(a.args) != 1:
                ap.error("configs DIR")
            for p in configs(plan, a.args[0]):
                print(p)
            return 0
        if not a.args:
            ap.error(f"{a.cmd} PREFIX")
        prefix = a.args[0]
        if a.cmd == "up":
            t0 = time.monotonic()
            vms = [v for v in a.vm.split(",") if v]
            up(plan, prefix, vms)
            if vms:
                taps = [vm_tap(l["node"], l["iface"]["name"]) for l in plan["links"] if l["node"] in vms]
                print(f"VM nodes {', '.join(vms)}: taps {', '.join(taps)} in {prefix}{plan['switch_ns']}")
            print(f"up: {len(plan['nodes']) + 1 - len(vms)} namespaces ({prefix}{plan['switch_ns']} + "
                  f"{', '.join(prefix + n for n in plan['nodes'] if n not in vms)}), {len(plan['links'])} links "
                  f"in {time.monotonic() - t0:.1f} s")
        elif a.cmd == "show":
            show(plan, prefix)
        elif a.cmd == "ping":
            t0 = time.monotonic()
            passed, failed = ping_matrix(plan, prefix, [v for v in a.vm.split(",") if v])
            for f in failed:
                print(f"FAIL ping {f}")
            print(f"ping: {passed} passed, {len(failed)} failed ({time.monotonic() - t0:.1f} s)")
            return 1 if failed else 0
        elif a.cmd in ("cut", "heal"):
            if len(a.args) != 3:
                ap.error(f"{a.cmd} PREFIX NS IFACE")
            node, iface = a.args[1], a.args[2]
            port = switch_port(prefix, plan, node, iface)
            swns = prefix + plan["switch_ns"]
            if a.cmd == "cut":
                nsx(swns, "ip", "link", "set", port, "nomaster")
            else:
                br = port.rstrip("0123456789")
                nsx(swns, "ip", "link", "set", port, "master", br, "up")
        return 0
    except (TopologyError, ValueError, KeyError, OSError) as e:
        print(f"run-topology: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
