#!/usr/bin/env bash
# Loads gns3/seed004.gns3 and the ballast appliance into a real gns3-server (3.0.6, from
# gns3/install-deps.sh) over its REST API (v3) and counts what it made. As root.
#
#   sudo gns3/load-test.sh [--no-image]
#
# The server runs in a network namespace of its own (only loopback: nothing it does can reach
# another address), bound to 127.0.0.1:3080 there, with every path (config, database,
# images, projects, appliances) under a temporary directory; it and the namespace are removed
# on exit, failure included. Steps:
#   1. log in as the default admin (admin/admin: gns3server/schemas/config.py's defaults,
#      written into the config for clarity) and get a bearer token;
#   2. the appliance in the appliances directory -> GET /v3/appliances lists it: when the image
#      is built (images/out/ballast.qcow2), the appliance file gns3/make-appliance.py makes for
#      it, then the image uploaded (POST /v3/images/upload; its md5 must be the appliance's) and
#      the appliance installed (POST /v3/appliances/ID/install): a qemu template "ballast";
#      without an image, the committed template (placeholder md5) and no install;
#   3. the project, as GNS3 opens a .gns3: POST /v3/projects/load -> the server converts it
#      (revision 9 -> 10), creates every node on its local compute (qemu nodes need their disk
#      image present: the real ballast.qcow2 when built, else a stand-in; debian-12.6.qcow2 is
#      always a stand-in, an empty qcow2; ethernet switches run in dynamips) and every link;
#      GET nodes and links and assert 12 nodes (9 qemu, 3 ethernet_switch) and 14 links with
#      the expected names and ends; then close it;
#   4. the project as a portable archive (File > Import portable project): a zip holding
#      project.gns3 -> POST /v3/projects/NEW_ID/import, open, the same counts, delete;
#   5. starting a node fails without ubridge: POST .../nodes/ID/start on the operator's node
#      (its disk a stand-in) is expected to answer an error naming uBridge.
# --no-image: skip the image upload and appliance install (step 2's second half).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
VENV=${GNS3_VENV:-/opt/ballast-gns3-venv}
WITH_IMAGE=1
[ "${1:-}" = --no-image ] && WITH_IMAGE=0
[ "$(id -u)" = 0 ] || { echo "load-test: run as root (network namespace)" >&2; exit 1; }
[ -x "$VENV/bin/gns3server" ] || { echo "load-test: no gns3-server in $VENV: run gns3/install-deps.sh" >&2; exit 1; }
command -v dynamips >/dev/null || { echo "load-test: dynamips missing: run gns3/install-deps.sh" >&2; exit 1; }
command -v qemu-img >/dev/null || { echo "load-test: qemu-img missing: run gns3/install-deps.sh" >&2; exit 1; }

T0=$(date +%s.%N)
say() { printf '[load-test %5.1fs] %s\n' "$(awk -v a="$(date +%s.%N)" -v b="$T0" 'BEGIN{print a-b}')" "$*"; }
NS=g3lt$$
TMP=$(mktemp -d /tmp/ballast-gns3-load.XXXXXX)
SERVER_PID=
cleanup() {
    local rc=$?
    if [ -n "$SERVER_PID" ]; then  # SIGTERM: it closes the projects (nodes, dynamips) and exits
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    fi
    # Whatever still runs in the namespace (the server's dynamips and qemu children).
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        pids=$(ip netns pids "$NS" 2>/dev/null || true)
        [ -z "$pids" ] && break
        # shellcheck disable=SC2086
        kill $pids 2>/dev/null || true
        sleep 0.3
    done
    pids=$(ip netns pids "$NS" 2>/dev/null || true)
    # shellcheck disable=SC2086
    [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    if [ $rc != 0 ] && [ -f "$TMP/server.log" ]; then
        echo "--- gns3-server log (last 40 lines) ---" >&2
        tail -40 "$TMP/server.log" >&2
    fi
    rm -rf "$TMP"
    exit $rc
}
trap cleanup EXIT INT TERM

ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
mkdir -p "$TMP"/{home,images/QEMU,projects,appliances,symbols,configs,resources}
PORT=3080
COMPUTE_PW=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
JWT=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat >"$TMP/gns3_server.conf" <<EOF
[Server]
host = 127.0.0.1
port = $PORT
images_path = $TMP/images
projects_path = $TMP/projects
appliances_path = $TMP/appliances
symbols_path = $TMP/symbols
configs_path = $TMP/configs
resources_path = $TMP/resources
report_errors = False
compute_username = gns3
compute_password = $COMPUTE_PW
ubridge_path = ubridge

[Controller]
jwt_secret_key = $JWT
default_admin_username = admin
default_admin_password = admin

[Dynamips]
dynamips_path = $(command -v dynamips)
EOF

# The appliance file and the images the project's qemu nodes use: with a built image, an
# appliance file made for it now (gns3/make-appliance.py, into the temporary directory).
IMAGE=$REPO/images/out/ballast.qcow2
if [ "$WITH_IMAGE" = 1 ] && [ -f "$IMAGE" ] &&
    python3 "$HERE/make-appliance.py" --image "$IMAGE" --out "$TMP/ballast.gns3a" >/dev/null; then
    IMAGE_MODE=upload
    APPLIANCE=$TMP/ballast.gns3a
else
    IMAGE_MODE=stand-in
    APPLIANCE=$HERE/ballast.gns3a
    qemu-img create -q -f qcow2 "$TMP/images/QEMU/ballast.qcow2" 1G
fi
cp "$APPLIANCE" "$TMP/appliances/ballast.gns3a"
qemu-img create -q -f qcow2 "$TMP/images/QEMU/debian-12.6.qcow2" 2G
mkdir -p "$TMP/projects/seed004"
cp "$HERE/seed004.gns3" "$TMP/projects/seed004/seed004.gns3"

say "gns3-server $("$VENV/bin/python" -c 'import gns3server.version as v; print(v.__version__)') in namespace $NS at 127.0.0.1:$PORT (data in $TMP)"
(cd "$TMP" && exec ip netns exec "$NS" env HOME="$TMP/home" XDG_CONFIG_HOME="$TMP/home/.config" \
    XDG_DATA_HOME="$TMP/home/.local/share" "$VENV/bin/gns3server" --config "$TMP/gns3_server.conf" \
    --logfile "$TMP/server.log" >"$TMP/server.out" 2>&1) &
SERVER_PID=$!
disown "$SERVER_PID"

ip netns exec "$NS" env PORT=$PORT TMP="$TMP" IMAGE="$IMAGE" IMAGE_MODE=$IMAGE_MODE APPLIANCE="$APPLIANCE" \
    SERVER_PID=$SERVER_PID T0="$T0" SEED_GNS3="$HERE/seed004.gns3" python3 - <<'PYEOF'
import io, json, os, sys, time, urllib.error, urllib.request, uuid, zipfile

BASE = f"http://127.0.0.1:{os.environ['PORT']}/v3"
T0 = float(os.environ["T0"])
TOKEN = None
failures = []


def say(msg):
    print(f"[load-test {time.time() - T0:5.1f}s] {msg}", flush=True)


def call(method, path, body=None, data=None, ctype="application/json", ok=(200, 201, 204), timeout=120):
    headers = {}
    if TOKEN:
        headers["Authorization"] = f"Bearer {TOKEN}"
    if body is not None:
        data = json.dumps(body).encode()
    if data is not None:
        headers["Content-Type"] = ctype
    req = urllib.request.Request(BASE + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    if status not in ok:
        raise SystemExit(f"load-test: {method} {path}: HTTP {status}: {raw[:2000].decode(errors='replace')}")
    return json.loads(raw) if raw else None


def check(cond, msg):
    if not cond:
        failures.append(msg)
        say(f"FAIL {msg}")


# The server: up within 60 s.
deadline = time.time() + 60
while True:
    try:
        with urllib.request.urlopen(BASE + "/version", timeout=2) as r:
            version = json.loads(r.read())
        break
    except (OSError, ValueError):
        if time.time() > deadline:
            raise SystemExit("load-test: the server did not answer within 60 s")
        try:
            os.kill(int(os.environ["SERVER_PID"]), 0)
        except ProcessLookupError:
            raise SystemExit("load-test: the server exited")
        time.sleep(0.3)
say(f"server up: version {version['version']}")

TOKEN = call("POST", "/access/users/authenticate", {"username": "admin", "password": "admin"})["access_token"]
me = call("GET", "/access/users/me")
say(f"logged in as {me['username']} (superadmin: {me.get('is_superadmin')})")

# --- the appliance ---------------------------------------------------------------------------
with open(os.environ["APPLIANCE"]) as f:
    app = json.load(f)
apps = {a["appliance_id"]: a for a in call("GET", "/appliances")}
check(app["appliance_id"] in apps, f"appliance {app['appliance_id']} not listed by GET /v3/appliances")
if app["appliance_id"] in apps:
    a = apps[app["appliance_id"]]
    say(f"appliance listed: {a['name']} (builtin {a.get('builtin')}), {len(apps)} appliances known")
if os.environ["IMAGE_MODE"] == "upload":
    t = time.time()
    with open(os.environ["IMAGE"], "rb") as f:
        img = call("POST", "/images/upload/ballast.qcow2", data=f.read(), ctype="application/octet-stream", timeout=300)
    check(img["checksum"] == app["images"][0]["md5sum"], f"uploaded image md5 {img['checksum']} != appliance's")
    say(f"image uploaded: {img['filename']} {img['image_size']} bytes md5 {img['checksum']} ({time.time() - t:.1f} s)")
    call("POST", f"/appliances/{app['appliance_id']}/install?version={app['versions'][0]['name']}")
    tmpl = [t for t in call("GET", "/templates") if t["name"] == "ballast"]
    check(len(tmpl) == 1, "no 'ballast' template after installing the appliance")
    if tmpl:
        t = tmpl[0]
        say(f"appliance installed: template '{t['name']}' ({t['template_type']}): adapters {t.get('adapters')} "
            f"{t.get('adapter_type')}, ram {t.get('ram')}, console {t.get('console_type')}, hda {t.get('hda_disk_image')}, "
            f"ports {[c.get('port_name') for c in t.get('custom_adapters', [])]}")
        check(t.get("adapters") == 3 and t.get("ram") == 1024 and t.get("hda_disk_image") == "ballast.qcow2",
              f"template settings: {t}")
else:
    say("image upload and appliance install skipped (no built image at images/out/ballast.qcow2, or --no-image): "
        "the project's ballast.qcow2 is a stand-in")

# --- the project ------------------------------------------------------------------------------
EXPECT_NODES = {"pub": "ethernet_switch", "prv": "ethernet_switch", "ctl": "ethernet_switch",
                "rt": "qemu", "lb1": "qemu", "lb2": "qemu", "wit": "qemu", "ops": "qemu",
                "web1": "qemu", "web2": "qemu", "web3": "qemu", "web4": "qemu"}
EXPECT_LINKS = {("rt", 0, "pub"), ("rt", 1, "prv"), ("lb1", 0, "pub"), ("lb1", 1, "prv"), ("lb1", 2, "ctl"),
                ("lb2", 0, "pub"), ("lb2", 1, "prv"), ("lb2", 2, "ctl"), ("wit", 2, "ctl"), ("ops", 0, "ctl"),
                ("web1", 0, "prv"), ("web2", 0, "prv"), ("web3", 0, "prv"), ("web4", 0, "prv")}


def count(pid, how):
    nodes = call("GET", f"/projects/{pid}/nodes")
    links = call("GET", f"/projects/{pid}/links")
    got = {n["name"]: n["node_type"] for n in nodes}
    by_id = {n["node_id"]: n for n in nodes}
    ends = set()
    for l in links:
        a, b = l["nodes"]
        na, nb = by_id[a["node_id"]], by_id[b["node_id"]]
        if na["node_type"] == "ethernet_switch":
            a, b, na, nb = b, a, nb, na
        ends.add((na["name"], a["adapter_number"], nb["name"]))
    check(len(nodes) == 12, f"{how}: {len(nodes)} nodes, want 12")
    check(len(links) == 14, f"{how}: {len(links)} links, want 14")
    check(got == EXPECT_NODES, f"{how}: nodes {got}")
    check(ends == EXPECT_LINKS, f"{how}: link ends differ: {sorted(ends ^ EXPECT_LINKS)}")
    q = sum(t == "qemu" for t in got.values())
    s = sum(t == "ethernet_switch" for t in got.values())
    say(f"{how}: {len(nodes)} nodes ({q} qemu, {s} ethernet_switch), {len(links)} links; statuses "
        f"{sorted({n['status'] for n in nodes})}")
    return nodes


t = time.time()
proj = call("POST", "/projects/load", {"path": os.path.join(os.environ["TMP"], "projects", "seed004", "seed004.gns3")})
say(f"project loaded: {proj['name']} {proj['project_id']} status {proj['status']} ({time.time() - t:.1f} s)")
check(proj["status"] == "opened", f"project status {proj['status']}")
nodes = count(proj["project_id"], "opened .gns3")
lb1 = [n for n in nodes if n["name"] == "lb1"][0]
say(f"lb1: console {lb1['console_type']} port {lb1['console']}, ports "
    f"{[p['name'] for p in lb1['ports']]}, hda {lb1['properties'].get('hda_disk_image')}")

# Starting needs ubridge: expect the server's own error.
ops = [n for n in nodes if n["name"] == "ops"][0]
r = call("POST", f"/projects/{proj['project_id']}/nodes/{ops['node_id']}/start", body={}, ok=(200, 204, 400, 409, 500))
msg = json.dumps(r) if r else ""
check("ubridge" in msg.lower(), f"starting a node without ubridge: expected an error naming uBridge, got {msg[:300]}")
say(f"start ops without ubridge -> {r.get('message', msg)[:160] if isinstance(r, dict) else msg[:160]}")
call("POST", f"/projects/{proj['project_id']}/close")

# The same file as a portable project archive.
buf = io.BytesIO()
new_id = str(uuid.uuid4())
with zipfile.ZipFile(buf, "w") as z:
    z.write(os.environ["SEED_GNS3"], "project.gns3")
t = time.time()
imp = call("POST", f"/projects/{new_id}/import?name=seed004-imported", data=buf.getvalue(), ctype="application/octet-stream")
call("POST", f"/projects/{imp['project_id']}/open")
say(f"portable archive imported as {imp['name']} {imp['project_id']} ({time.time() - t:.1f} s)")
count(imp["project_id"], "imported archive")
call("POST", f"/projects/{imp['project_id']}/close")
call("DELETE", f"/projects/{imp['project_id']}")

if failures:
    print(f"load-test: 0 passed, {len(failures)} failed", flush=True)
    sys.exit(1)
print("load-test: 1 passed, 0 failed", flush=True)
PYEOF
say "done"
