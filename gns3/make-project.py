#!/usr/bin/env python3
"""Writes gns3/seed004.gns3, the GNS3 project of seed 004's topology, from the sidecar
gns3/seed004.addresses.json (names, adapters, segments) and the node types and canvas
layout below. Python 3 standard library only.

    gns3/make-project.py            rewrite seed004.gns3
    gns3/make-project.py --check    exit 1 if seed004.gns3 differs from what it would write

Every id is a UUID derived (uuid5) from a name, so the file is the same on every run:
the project_id, node_ids and link_ids stay stable across regenerations.

The file is revision 9 (GNS3 2.2's format; GNS3 3.x converts it to revision 10 when it
opens it) and uses only fields that both 2.2's JSON schemas and 3.x's pydantic models
accept (gns3-server 2.2.61's jsonschemas, 3.0.x's pydantic models): no template_id. The
ballast nodes' port names (eth0-public, ...) are node-level custom_adapters, where GNS3
itself writes them (the controller names ports from there).
"""
import json
import os
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SIDECAR = os.path.join(HERE, "seed004.addresses.json")
OUT = os.path.join(HERE, "seed004.gns3")

NS = uuid.UUID("6d0f4e0a-5b1c-4f53-9a55-ba11a57b0004")  # ids of this project's objects
PROJECT_ID = str(uuid.uuid5(NS, "project/seed004"))


def uid(kind, name):
    return str(uuid.uuid5(NS, f"{kind}/{name}"))


# The ballast appliance (gns3/ballast.gns3a): LB devices and the witness.
BALLAST_PORTS = {0: "eth0-public", 1: "eth1-private", 2: "eth2-control"}


def ballast_properties():
    return {
        "platform": "x86_64",
        "hda_disk_image": "ballast.qcow2",
        "hda_disk_interface": "virtio",
        "adapters": 3,
        "adapter_type": "virtio-net-pci",
        "ram": 1024,
        "cpus": 1,
        "console_type": "telnet",
        "boot_priority": "c",
        "linked_clone": True,
        "on_close": "power_off",
        "options": "",
        "usage": "ballast appliance. First boot: attach a config disk as HDB "
                 "(gns3/run-topology.py configs; images/mkcfgdisk.sh). Console: root, no password.",
    }


# Linux hosts (router+client, operator console, web servers): GNS3's own Debian appliance
# (the marketplace's "Debian" 12.6, debian-12.6.qcow2, user debian/debian). Qemu, not
# docker: a docker node cannot be created without a docker daemon holding its image (GNS3
# pulls it from Docker Hub), so the project could not be opened by the load test here.
def host_properties(adapters, usage):
    return {
        "platform": "x86_64",
        "hda_disk_image": "debian-12.6.qcow2",
        "hda_disk_interface": "scsi",
        "adapters": adapters,
        "adapter_type": "virtio-net-pci",
        "ram": 512,
        "cpus": 1,
        "console_type": "telnet",
        "boot_priority": "c",
        "linked_clone": True,
        "on_close": "power_off",
        "options": "",
        "usage": usage,
    }


SWITCH_PORTS = 8

# Canvas positions (GNS3 coordinates: the node's top-left corner, y grows downwards).
LAYOUT = {
    "rt": (-40, -330),
    "pub": (-40, -210),
    "lb1": (-260, -80),
    "lb2": (180, -80),
    "ctl": (430, -80),
    "wit": (600, -180),
    "ops": (600, 20),
    "prv": (-40, 70),
    "web1": (-370, 200),
    "web2": (-150, 200),
    "web3": (70, 200),
    "web4": (290, 200),
}
SYMBOLS = {
    "router+client": ":/symbols/router.svg",
    "lb-device": ":/symbols/multilayer_switch.svg",
    "witness": ":/symbols/server.svg",
    "operator": ":/symbols/computer.svg",
    "web": ":/symbols/server.svg",
}
USAGE = {
    "router+client": "Seed 004's public and private routers and the client in one node: "
                     "ip_forward=1, eth0 (ens4) public, eth1 (ens5) private. See gns3/README.md.",
    "operator": "The operator's console on the control network: the ballast CLI and curl against the API.",
    "web": "A web server on the private segment (python3 -m http.server 80). See gns3/README.md.",
}


def label(text):
    return {"text": text, "style": "font-family: TypeWriter;font-size: 10.0;font-weight: bold;fill: #000000;fill-opacity: 1.0;",
            "x": None, "y": -25, "rotation": 0}


def text_drawing(key, x, y, text, size=10):
    svg = (f'<svg width="{12 * len(text) // 2 + 20}" height="{size * 2 + 4}">'
           f'<text font-family="TypeWriter" font-size="{size}.0" font-weight="bold" fill="#00007f" fill-opacity="1.0">'
           f"{text}</text></svg>")
    return {"drawing_id": uid("drawing", key), "x": x, "y": y, "z": 2, "rotation": 0, "svg": svg}


def build(side):
    nodes, links, drawings = [], [], []
    switch_port = {}  # segment -> next free port number
    for seg in side["segments"]:
        x, y = LAYOUT[seg]
        nodes.append({
            "compute_id": "local",
            "node_id": uid("node", seg),
            "node_type": "ethernet_switch",
            "name": seg,
            "console": None,
            "label": label(seg),
            "symbol": ":/symbols/ethernet_switch.svg",
            "x": x, "y": y, "z": 1,
            "properties": {
                "ports_mapping": [
                    {"name": f"Ethernet{i}", "port_number": i, "type": "access", "vlan": 1}
                    for i in range(SWITCH_PORTS)
                ]
            },
        })
        switch_port[seg] = 0
    for n in side["nodes"]:
        name, role = n["name"], n["role"]
        x, y = LAYOUT[name]
        if n["kind"] == "ballast":
            props = ballast_properties()
            fmt = "eth{0}"
        else:
            adapters = 1 + max(i["adapter"] for i in n["interfaces"])
            props = host_properties(adapters, USAGE[role])
            fmt = "ens{port4}"
        extra = {}
        if n["kind"] == "ballast":
            extra["custom_adapters"] = [{"adapter_number": a, "port_name": p} for a, p in BALLAST_PORTS.items()]
        nodes.append({
            **extra,
            "compute_id": "local",
            "node_id": uid("node", name),
            "node_type": "qemu",
            "name": name,
            "console": None,
            "console_type": "telnet",
            "label": label(name),
            "symbol": SYMBOLS[role],
            "x": x, "y": y, "z": 1,
            "port_name_format": fmt,
            "port_segment_size": 0,
            "properties": props,
        })
    # Links in the sidecar's order (nodes, then their interfaces): seed_topo.sh's order.
    for n in side["nodes"]:
        for i in n["interfaces"]:
            seg = i["segment"]
            port = switch_port[seg]
            switch_port[seg] += 1
            if port >= SWITCH_PORTS:
                raise SystemExit(f"switch {seg}: more than {SWITCH_PORTS} links")
            links.append({
                "link_id": uid("link", f"{n['name']}/{i['adapter']}"),
                "nodes": [
                    {"node_id": uid("node", n["name"]), "adapter_number": i["adapter"], "port_number": 0},
                    {"node_id": uid("node", seg), "adapter_number": 0, "port_number": port},
                ],
                "filters": {},
                "suspend": False,
            })
    seg_text = {
        "pub": "public 198.51.100.0/24 (seed 004: 14.14.1.0/24)",
        "prv": "private 10.10.0.0/24 (seed 004: 172.16.0.0/24)",
        "ctl": "control 10.99.0.0/24 (gossip, Raft, API)",
    }
    for seg, text in seg_text.items():
        x, y = LAYOUT[seg]
        drawings.append(text_drawing(f"segment/{seg}", x + 60, y + 45, text))
    drawings.append(text_drawing("title", -380, -400,
                                 "seed 004: LB cluster (ballast). Addresses: gns3/seed004.addresses.json", 12))
    return {
        "auto_close": True,
        "auto_open": False,
        "auto_start": False,
        "drawing_grid_size": 25,
        "grid_size": 75,
        "name": "seed004",
        "project_id": PROJECT_ID,
        "revision": 9,
        "scene_height": 1000,
        "scene_width": 2000,
        "show_grid": False,
        "show_interface_labels": True,
        "show_layers": False,
        "snap_to_grid": False,
        "topology": {"computes": [], "drawings": drawings, "links": links, "nodes": nodes},
        "type": "topology",
        "version": "2.2.0",
        "zoom": 100,
    }


def main():
    with open(SIDECAR, encoding="utf-8") as f:
        side = json.load(f)
    text = json.dumps(build(side), indent=4, sort_keys=True) + "\n"
    if sys.argv[1:] == ["--check"]:
        with open(OUT, encoding="utf-8") as f:
            if f.read() != text:
                print(f"{OUT} is out of date: run gns3/make-project.py", file=sys.stderr)
                return 1
        print(f"{OUT} is up to date")
        return 0
    if sys.argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {OUT}: {len(side['nodes']) + len(side['segments'])} nodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
