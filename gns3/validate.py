#!/usr/bin/env python3
"""Validates gns3/ballast.gns3a and gns3/seed004.gns3 with gns3-server's own models.

    /opt/ballast-gns3-venv/bin/python gns3/validate.py [--appliance FILE ...] [--project FILE]

Run it with the venv's python (gns3/install-deps.sh makes it; GNS3_VENV overrides the
path): it re-executes itself there when started with another interpreter. Exit 0 when every
file passes; otherwise it names each problem and exits 1.

What is checked, and with which of gns3-server's (3.0.x) code:
  appliance  gns3server.schemas.Appliance (what the appliance manager validates every .gns3a
             with when it loads it); then the template GNS3 makes from it when the appliance
             is installed (controller.appliance_to_template.ApplianceToTemplate, then
             schemas.TemplateCreate and the qemu template model, as TemplatesService does);
             plus: no key the models would silently drop (a typo), registry_version 6, the
             image entry (ballast.qcow2, a 32-hex md5sum; placeholders only in the committed
             template, which is reported as such).
  project    gns3server.controller.topology.load_topology on a copy (the code GNS3 3.x opens a
             .gns3 with: it converts revision 9 to 10 and validates schemas.controller.topology
             .Topology), then every node with schemas.NodeCreate and its properties with the
             compute's create model (QemuCreate, EthernetSwitchCreate), every link with
             LinkCreate, every drawing with Drawing; link ends on existing adapters and switch
             ports; the ballast nodes use the appliance's image, adapters and RAM; and the
             sidecar (seed004.addresses.json) agrees with the project (run-topology.py's check).
  appliance, GNS3 2.2   the JSON schema GNS3 2.2's GUI validates an imported .gns3a with
             (from the gns3-gui 2.2.61 wheel install-deps.sh downloads).
  project, GNS3 2.2   when GNS3 2.2's server is installed too (gns3-server 2.2.61 in
             /opt/ballast-gns3-22-venv, GNS3_22_VENV): its load_topology (jsonschema, revision
             9 is its own format) and its compute's create schemas for each node's properties.
"""
import copy
import importlib.util
import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.environ.get("GNS3_VENV", "/opt/ballast-gns3-venv")

try:
    import gns3server  # noqa: F401
except ImportError:
    py = os.path.join(VENV, "bin", "python")
    if os.path.exists(py) and os.path.realpath(sys.prefix) != os.path.realpath(VENV):
        os.execv(py, [py, os.path.abspath(__file__)] + sys.argv[1:])
    sys.exit(f"validate: gns3-server is not installed in {VENV}: run gns3/install-deps.sh (as root)")

import pydantic  # noqa: E402

import gns3server.controller  # noqa: E402,F401  (import order: breaks a circular import)
from gns3server import schemas  # noqa: E402
from gns3server.controller.appliance_to_template import ApplianceToTemplate  # noqa: E402
from gns3server.controller.topology import load_topology, GNS3_FILE_FORMAT_REVISION  # noqa: E402
from gns3server.services.templates import TEMPLATE_TYPE_TO_SCHEMA  # noqa: E402
from gns3server.version import __version__ as GNS3_VERSION  # noqa: E402
from fastapi.encoders import jsonable_encoder  # noqa: E402

# Keys of a v6 registry appliance's qemu section that 3.x's Appliance model does not list but
# its template does (gns3-registry's appliance_v6.json has them).
QEMU_EXTRA_V6 = {"custom_adapters", "on_close"}
PLACEHOLDER_MD5 = "0" * 32
VENV22 = os.environ.get("GNS3_22_VENV", "/opt/ballast-gns3-22-venv")

# Run by GNS3 2.2's server (gns3-server 2.2.x, its own venv): its load_topology (jsonschema
# validation of the whole file, revision 9 is its current format) and its compute's create
# schemas for every node's properties, the checks a 2.2 server makes when it opens the project.
CHECK_22 = r"""
import json, os, shutil, sys, tempfile
import aiohttp.web  # gns3-server 2.2 expects it imported
import jsonschema
import gns3server.controller
from gns3server.controller.topology import load_topology, GNS3_FILE_FORMAT_REVISION
from gns3server.schemas.qemu import QEMU_CREATE_SCHEMA
from gns3server.schemas.ethernet_switch import ETHERNET_SWITCH_CREATE_SCHEMA
from gns3server.version import __version__
d = tempfile.mkdtemp()
try:
    p = os.path.join(d, "p.gns3")
    shutil.copy(sys.argv[1], p)
    t = load_topology(p)
finally:
    shutil.rmtree(d, ignore_errors=True)
schemas = {"qemu": QEMU_CREATE_SCHEMA, "ethernet_switch": ETHERNET_SWITCH_CREATE_SCHEMA}
for n in t["topology"]["nodes"]:
    jsonschema.validate(dict(name=n["name"], node_id=n["node_id"], **n.get("properties", {})), schemas[n["node_type"]])
print(f"gns3-server {__version__}: revision {t['revision']} (its own: {GNS3_FILE_FORMAT_REVISION}), "
      f"{len(t['topology']['nodes'])} nodes, {len(t['topology']['links'])} links")
"""

problems = []


def fail(what, msg):
    problems.append(f"{what}: {msg}")


def unknown_keys(what, data, model, extra=()):
    for k in data:
        if k not in model.model_fields and k not in extra:
            fail(what, f"key '{k}' is not in gns3-server's {model.__name__} model (it would be ignored)")


def check_appliance(path, template=False):
    what = os.path.relpath(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        fail(what, f"cannot read: {e}")
        return None
    try:
        schemas.Appliance.model_validate(data)
    except pydantic.ValidationError as e:
        fail(what, f"invalid appliance (gns3server.schemas.Appliance):\n{e}")
        return None
    unknown_keys(what, data, schemas.Appliance)
    qemu = data.get("qemu")
    if not qemu:
        fail(what, "no qemu section")
        return None
    unknown_keys(f"{what} qemu", qemu, schemas.controller.appliances.Qemu, QEMU_EXTRA_V6)
    if data["registry_version"] != 6:
        fail(what, f"registry_version {data['registry_version']}, want 6")
    images = data.get("images") or []
    if [i["filename"] for i in images] != ["ballast.qcow2"]:
        fail(what, f"images: want one entry, ballast.qcow2, not {[i['filename'] for i in images]}")
    for img in images:
        placeholder = img["md5sum"] == PLACEHOLDER_MD5 or img["filesize"] == 0
        if placeholder and not template:
            fail(what, "md5sum/filesize are the template's placeholders: run gns3/make-appliance.py")
        if not placeholder and template:
            fail(what, "the committed template should carry the placeholders (gns3/make-appliance.py --template)")
    # The template GNS3 creates when this appliance is installed, validated as the server does.
    versions = data.get("versions") or []
    if not versions:
        fail(what, "no versions")
        return data
    for v in versions:
        try:
            tmpl = ApplianceToTemplate().new_template(copy.deepcopy(data), v, "local")
            tc = schemas.TemplateCreate(**tmpl)
            settings = jsonable_encoder(tc, exclude_unset=True)
            TEMPLATE_TYPE_TO_SCHEMA[tc.template_type].model_validate(settings)
        except (pydantic.ValidationError, KeyError, TypeError) as e:
            fail(what, f"version {v['name']}: the template GNS3 would make is invalid:\n{e}")
    return data


def check_project(path, appliance):
    what = os.path.relpath(path)
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    if raw.get("revision") != 9:
        fail(what, f"revision {raw.get('revision')}, want 9 (GNS3 2.2 and 3.x load it)")
    tmp = tempfile.mkdtemp(prefix="ballast-gns3-validate.")
    try:
        copy_path = os.path.join(tmp, os.path.basename(path))
        shutil.copy(path, copy_path)
        try:
            topo = load_topology(copy_path)  # converts 9 -> 10 and validates, as opening does
        except Exception as e:  # ControllerError and anything the converters raise
            fail(what, f"gns3server.controller.topology.load_topology rejects it: {e}")
            return
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if topo["revision"] != GNS3_FILE_FORMAT_REVISION:
        fail(what, f"converted to revision {topo['revision']}, not {GNS3_FILE_FORMAT_REVISION}")
    t = topo["topology"]
    nodes = {n["node_id"]: n for n in t["nodes"]}
    for n in raw["topology"]["nodes"]:  # the names as written (3.x would rename invalid ones)
        conv = nodes.get(n["node_id"], {})
        if conv.get("name") != n["name"]:
            fail(what, f"node name {n['name']} is not a valid hostname for GNS3 3.x (it renames it {conv.get('name')})")
    for n in t["nodes"]:
        nw = f"{what} node {n['name']}"
        try:
            schemas.NodeCreate.model_validate(n)
        except pydantic.ValidationError as e:
            fail(nw, f"invalid node (schemas.NodeCreate):\n{e}")
        props = dict(n.get("properties", {}))
        model = {"qemu": schemas.QemuCreate, "ethernet_switch": schemas.EthernetSwitchCreate}.get(n["node_type"])
        if model is None:
            fail(nw, f"node type {n['node_type']}: not one this project is meant to use")
            continue
        unknown_keys(f"{nw} properties", props, model)
        try:
            model.model_validate({"name": n["name"], "node_id": n["node_id"], **props})
        except pydantic.ValidationError as e:
            fail(nw, f"invalid properties ({model.__name__}):\n{e}")
        if n["node_type"] == "qemu" and props.get("hda_disk_image") == "ballast.qcow2" and appliance:
            q = appliance["qemu"]
            for k in ("adapters", "adapter_type", "ram", "hda_disk_interface"):
                if props.get(k) != q.get(k):
                    fail(nw, f"{k} {props.get(k)!r} differs from the appliance's {q.get(k)!r}")
    used = set()
    for l in t["links"]:
        lw = f"{what} link {l.get('link_id')}"
        try:
            schemas.LinkCreate.model_validate(l)
        except pydantic.ValidationError as e:
            fail(lw, f"invalid link (schemas.LinkCreate):\n{e}")
            continue
        for end in l["nodes"]:
            n = nodes.get(end["node_id"])
            if n is None:
                fail(lw, f"unknown node {end['node_id']}")
                continue
            key = (end["node_id"], end["adapter_number"], end["port_number"])
            if key in used:
                fail(lw, f"{n['name']} adapter {key[1]} port {key[2]} is used twice")
            used.add(key)
            p = n.get("properties", {})
            if n["node_type"] == "qemu" and not (0 <= end["adapter_number"] < p.get("adapters", 1) and end["port_number"] == 0):
                fail(lw, f"{n['name']} has no adapter {end['adapter_number']} port {end['port_number']}")
            if n["node_type"] == "ethernet_switch" and end["port_number"] not in [x["port_number"] for x in p.get("ports_mapping", [])]:
                fail(lw, f"switch {n['name']} has no port {end['port_number']}")
    for d in t["drawings"]:
        try:
            schemas.Drawing.model_validate(d)
        except pydantic.ValidationError as e:
            fail(f"{what} drawing", str(e))
    # The sidecar agrees with the project (the namespace runner's own check).
    spec = importlib.util.spec_from_file_location("run_topology", os.path.join(HERE, "run-topology.py"))
    rt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rt)
    sidecar = os.path.splitext(path)[0] + ".addresses.json"
    try:
        plan = rt.load(path, sidecar)
    except (rt.TopologyError, ValueError, KeyError) as e:
        fail(what, f"sidecar {os.path.basename(sidecar)} disagrees: {e}")
        return
    print(f"ok   {what}: revision 9 -> {topo['revision']} with gns3-server {GNS3_VERSION}'s load_topology; "
          f"{len(t['nodes'])} nodes ({sum(n['node_type'] == 'qemu' for n in t['nodes'])} qemu, "
          f"{sum(n['node_type'] == 'ethernet_switch' for n in t['nodes'])} ethernet_switch), {len(t['links'])} links, "
          f"{len(t['drawings'])} drawings; sidecar consistent ({len(plan['links'])} interfaces)")


# GNS3 2.2's GUI on File > Import appliance (gns3/registry/appliance.py, _check_config):
# registry_version at most 8, then jsonschema Draft 4 against its gns3/schemas/appliance.json
# (appliance_v8.json for version 8). Run with the 2.2 venv's jsonschema; the schema is read
# from the gns3-gui wheel install-deps.sh downloads.
CHECK_GUI_22 = r"""
import glob, json, sys, zipfile
import jsonschema
wheel = sorted(glob.glob(sys.argv[1] + "/gui/gns3_gui-*.whl"))[-1]
z = zipfile.ZipFile(wheel)
for path in sys.argv[2:]:
    a = json.load(open(path))
    if a["registry_version"] > 8:
        sys.exit(f"{path}: registry_version {a['registry_version']} > 8")
    schema = json.loads(z.read("gns3/schemas/" + ("appliance_v8.json" if a["registry_version"] == 8 else "appliance.json")))
    v = jsonschema.Draft4Validator(schema)
    errors = list(v.iter_errors(a))
    if errors:
        sys.exit(f"{path}: {jsonschema.exceptions.best_match(errors).message}")
print(wheel.split("/")[-1].split("-py3")[0].replace("_", "-"))
"""


def check_appliance_gui_22(files):
    py = os.path.join(VENV22, "bin", "python")
    import glob
    if not os.path.exists(py) or not glob.glob(os.path.join(VENV22, "gui", "gns3_gui-*.whl")):
        print(f"skip appliance check with GNS3 2.2's GUI schema: no gns3-gui wheel in {VENV22}/gui (gns3/install-deps.sh)")
        return
    import subprocess
    r = subprocess.run([py, "-c", CHECK_GUI_22, VENV22] + [os.path.abspath(f) for f in files],
                       capture_output=True, text=True)
    if r.returncode != 0:
        fail("appliance", f"GNS3 2.2's GUI would refuse it: {(r.stderr or r.stdout).strip()[-2000:]}")
    else:
        print(f"ok   {', '.join(os.path.relpath(f) for f in files)}: {r.stdout.strip()}'s appliance schema "
              f"(what GNS3 2.2's File > Import appliance checks)")


def check_project_22(path):
    what = os.path.relpath(path)
    py = os.path.join(VENV22, "bin", "python")
    if not os.path.exists(py):
        print(f"skip {what} with GNS3 2.2's server: no venv at {VENV22} (gns3/install-deps.sh makes it)")
        return
    import subprocess
    r = subprocess.run([py, "-c", CHECK_22, os.path.abspath(path)], capture_output=True, text=True, cwd=HERE)
    if r.returncode != 0:
        fail(what, f"GNS3 2.2's server rejects it:\n{(r.stderr or r.stdout).strip()[-3000:]}")
    else:
        print(f"ok   {what}: {r.stdout.strip()}; every node's properties pass its compute schemas")


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--appliance", action="append", help="appliance file(s) (default: the committed "
                    "template, and gns3/out/ballast.gns3a when it exists)")
    ap.add_argument("--project", default=os.path.join(HERE, "seed004.gns3"))
    a = ap.parse_args()
    template = os.path.join(HERE, "ballast.gns3a")
    files = a.appliance or [template] + [p for p in [os.path.join(HERE, "out", "ballast.gns3a")] if os.path.exists(p)]
    appliance = None
    for p in files:
        n = len(problems)
        is_template = os.path.abspath(p) == template
        data = check_appliance(p, template=is_template)
        if data is not None and len(problems) == n:
            img = data["images"][0]
            note = " (md5sum/filesize placeholders: the template)" if is_template else \
                f" ({img['filename']} {img['version']}, {img['filesize']} bytes, md5 {img['md5sum']})"
            print(f"ok   {os.path.relpath(p)}: registry_version {data['registry_version']}, gns3-server "
                  f"{GNS3_VERSION}'s Appliance model and qemu template{note}")
        appliance = appliance or data
    if os.path.abspath(a.project) == os.path.join(HERE, "seed004.gns3"):
        import subprocess
        r = subprocess.run([sys.executable, os.path.join(HERE, "make-project.py"), "--check"], capture_output=True, text=True)
        if r.returncode != 0:
            fail("seed004.gns3", (r.stderr or r.stdout).strip())
    check_appliance_gui_22(files)
    check_project(a.project, appliance)
    check_project_22(a.project)
    if problems:
        for p in problems:
            print(f"FAIL {p}", file=sys.stderr)
        print(f"validate: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("validate: all files valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
