#!/usr/bin/env python3
"""Writes the ballast GNS3 appliance file for a built image. Python 3 standard library only.

    gns3/make-appliance.py [--image images/out/ballast.qcow2] [--out gns3/out/ballast.gns3a]
    gns3/make-appliance.py --template     rewrite the committed gns3/ballast.gns3a

The committed gns3/ballast.gns3a is the template: every field is final except the image's
md5sum and filesize, which are placeholders (32 zeros and 0) because the image is rebuilt
whenever the ballast binary changes (images/build.sh), and a committed checksum would be
stale after the next build. This script takes the template, fills in the built image's
md5sum, filesize and version (the ballast version baked into the image, from the binary
next to it or images/out/build-info) and writes gns3/out/ballast.gns3a: that is the file
to import into GNS3, together with the image.
"""
import argparse
import hashlib
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TEMPLATE = os.path.join(HERE, "ballast.gns3a")
PLACEHOLDER_MD5 = "0" * 32


def appliance(version="0.1.0", md5=PLACEHOLDER_MD5, size=0):
    """The appliance (the template when md5/size are the placeholders)."""
    return {
        "appliance_id": "b4a1a57b-a11a-4d5c-9e55-ba11a57000a1",
        "name": "ballast",
        "category": "router",
        "description": (
            "ballast: a kernel-accelerated L4/L7 load-balancer appliance. One `ballast agent` per LB "
            "device: XDP/eBPF L4 forwarding (Maglev hashing, IPIP tunnel or NAT), an L7 proxy with "
            "HAProxy's semantics and TLS offload, and a control plane (gossip + Raft) that places VIPs "
            "on devices and moves them when a device fails. The same image runs a witness (a Raft voter "
            "without a data plane)."
        ),
        "vendor_name": "ballast",
        "vendor_url": "",
        "documentation_url": "",
        "product_name": "ballast",
        "registry_version": 6,
        "status": "experimental",
        "availability": "free",
        "maintainer": "ballast developers",
        "maintainer_email": "",
        "usage": (
            "NICs: eth0 public (VIPs), eth1 private (backends), eth2 control (gossip, Raft, API; a "
            "witness uses only eth2). Seed 004's devices have two NICs: with only eth0/eth1 cabled, "
            "bind the agent to eth1 (bind=eth1).\n"
            "First boot: attach a config disk (vfat or ISO labelled BALLASTCFG holding ballast.conf; "
            "images/mkcfgdisk.sh makes one) as HDB, or give ballast.KEY=VALUE kernel arguments. "
            "Keys: node role addr gw dns bind join encrypt bootstrap_expect server datacenter.\n"
            "Console (serial, telnet): log in as root, no password. `ballast-config show` prints the "
            "settings in force; the agent logs with `journalctl -u ballast`; its API is on port 8500."
        ),
        "symbol": ":/symbols/multilayer_switch.svg",
        "port_name_format": "eth{0}",
        "linked_clone": True,
        "qemu": {
            "adapter_type": "virtio-net-pci",
            "adapters": 3,
            "custom_adapters": [
                {"adapter_number": 0, "port_name": "eth0-public"},
                {"adapter_number": 1, "port_name": "eth1-private"},
                {"adapter_number": 2, "port_name": "eth2-control"},
            ],
            "ram": 1024,
            "cpus": 1,
            "hda_disk_interface": "virtio",
            "hdb_disk_interface": "virtio",
            "arch": "x86_64",
            "console_type": "telnet",
            "boot_priority": "c",
            "kvm": "allow",
            "on_close": "power_off",
        },
        "images": [
            {
                "filename": "ballast.qcow2",
                "version": version,
                "md5sum": md5,
                "filesize": size,
            }
        ],
        "versions": [{"name": version, "images": {"hda_disk_image": "ballast.qcow2"}}],
    }


def image_version(image):
    """The ballast version in the image: `ballast --version` of the binary it was built from."""
    out = os.path.dirname(image)
    for binary in (os.environ.get("BALLAST_BIN"), os.path.join(REPO, "target", "release", "ballast")):
        if binary and os.access(binary, os.X_OK):
            try:
                v = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
                m = re.search(r"(\d+\.\d+\.\d+\S*)", v)
                if m:
                    return m.group(1)
            except (OSError, subprocess.SubprocessError):
                pass
    info = os.path.join(out, "build-info")
    if os.path.exists(info):
        with open(info) as f:
            for line in f:
                if line.startswith("built="):
                    return "0.1.0-" + line.split("=", 1)[1].strip()[:10]
    return "0.1.0"


def md5sum(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=4)
        f.write("\n")
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default=os.path.join(REPO, "images", "out", "ballast.qcow2"))
    ap.add_argument("--out", default=os.path.join(HERE, "out", "ballast.gns3a"))
    ap.add_argument("--version", help="image version (default: the ballast binary's)")
    ap.add_argument("--template", action="store_true", help="rewrite the committed template")
    a = ap.parse_args()
    if a.template:
        write(TEMPLATE, appliance())
        print(f"wrote {TEMPLATE} (md5sum/filesize placeholders)")
        return 0
    if not os.path.isfile(a.image):
        print(f"no image at {a.image}: build it first (images/build.sh)", file=sys.stderr)
        return 1
    # The template's fields, with the image's values: the committed file stays the source.
    with open(TEMPLATE, encoding="utf-8") as f:
        data = json.load(f)
    version = a.version or image_version(a.image)
    md5, size = md5sum(a.image), os.path.getsize(a.image)
    data["images"] = [{"filename": os.path.basename(a.image), "version": version, "md5sum": md5, "filesize": size}]
    data["versions"] = [{"name": version, "images": {"hda_disk_image": os.path.basename(a.image)}}]
    write(a.out, data)
    print(f"wrote {a.out}: {os.path.basename(a.image)} version {version}, {size} bytes, md5 {md5}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
