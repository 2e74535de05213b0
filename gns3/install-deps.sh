#!/usr/bin/env bash
# Installs what gns3/validate.py, gns3/load-test.sh and gns3/run-topology.py need on a
# Debian 12 (bookworm) host, as root. Idempotent: installs only what is missing or changed.
#
#   /opt/ballast-gns3-venv      gns3-server 3.0.6 (pinned with its dependencies in
#                               gns3/requirements-gns3-3.0.txt): validate.py's models, load-test.sh's server
#   /opt/ballast-gns3-22-venv   gns3-server 2.2.61 (gns3/requirements-gns3-2.2.txt): validate.py's
#                               check that GNS3 2.2's server accepts the project too; and the
#                               gns3-gui 2.2.61 wheel (downloaded, not installed) for the appliance
#                               schema GNS3 2.2's GUI checks an imported .gns3a against
#   dynamips                    GNS3's ethernet_switch nodes run in a dynamips hypervisor, so a
#                               server cannot open the project without it (load-test.sh). Debian
#                               has it in bookworm's non-free component: fetched with a private
#                               apt source list (the machine's apt sources are left as they are)
#   iproute2 ethtool iputils-ping curl   run-topology.py, its ping check and the demo
#   qemu-system-x86 qemu-utils  a qemu node is created with its image's qemu-img info; when
#                               missing, images/install-deps.sh installs them (bookworm-backports)
#
# Not installable here: ubridge (no registry carries it), which GNS3 needs to start nodes.
# Environment: PYTHON (default /usr/bin/python3, else python3 on PATH), GNS3_VENV, GNS3_22_VENV,
# SKIP_22=1 (no 2.2 venv).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
VENV=${GNS3_VENV:-/opt/ballast-gns3-venv}
VENV22=${GNS3_22_VENV:-/opt/ballast-gns3-22-venv}
APT_OPTS=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
export DEBIAN_FRONTEND=noninteractive
T0=$(date +%s)
log() { printf '[gns3 install-deps +%ss] %s\n' $(($(date +%s) - T0)) "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "run as root"; exit 1; }

missing() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || echo "$p"
    done
}
updated=0
apt_update() {
    [ "$updated" = 1 ] && return 0
    log "apt-get update"
    apt-get "${APT_OPTS[@]}" update -qq
    updated=1
}

PY=${PYTHON:-/usr/bin/python3}
[ -x "$PY" ] || PY=$(command -v python3)
pkgs=(iproute2 ethtool iputils-ping curl)
[ "$PY" = /usr/bin/python3 ] && pkgs+=(python3-venv)
need=$(missing "${pkgs[@]}")
if [ -n "$need" ]; then
    apt_update
    log "installing: $need"
    # shellcheck disable=SC2086
    apt-get "${APT_OPTS[@]}" install -y -qq --no-install-recommends $need >/dev/null
fi

if ! command -v qemu-img >/dev/null || ! command -v qemu-system-x86_64 >/dev/null; then
    log "qemu missing: images/install-deps.sh"
    bash "$REPO/images/install-deps.sh"
fi

# dynamips from bookworm non-free, through a source list of our own: the same Debian archive
# the machine's apt uses (its URI read from apt), the non-free component, lists kept apart.
if ! command -v dynamips >/dev/null; then
    uri=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 2>/dev/null |
        awk '$2 == "bookworm" && $3 == "main" {print $1; exit}')
    [ -n "$uri" ] || { log "no bookworm main source in apt's configuration: cannot locate dynamips"; exit 1; }
    tmp=$(mktemp -d /tmp/ballast-dynamips.XXXXXX)
    chmod 755 "$tmp"  # apt's download user reads and writes there
    trap 'rm -rf "$tmp"' EXIT
    mkdir -p "$tmp/lists/partial"
    echo "deb $uri bookworm non-free" >"$tmp/sources.list"
    priv=(-o Dir::Etc::sourcelist="$tmp/sources.list" -o Dir::Etc::sourceparts=- -o Dir::State::Lists="$tmp/lists"
        -o APT::Get::List-Cleanup=0)
    log "dynamips: bookworm non-free (private source list)"
    apt-get "${APT_OPTS[@]}" "${priv[@]}" update -qq
    (cd "$tmp" && apt-get "${APT_OPTS[@]}" "${priv[@]}" download dynamips >/dev/null)
    apt_update
    apt-get "${APT_OPTS[@]}" install -y -qq --no-install-recommends "$tmp"/dynamips_*.deb >/dev/null
    rm -rf "$tmp"
    trap - EXIT
fi
log "dynamips: $(dpkg-query -W -f='${Version}' dynamips 2>/dev/null || echo "$(command -v dynamips)")"

# A venv per pinned requirements file; rebuilt only when the file changes.
venv() {
    local dir=$1 req=$2 stamp sum
    sum=$(sha256sum "$req" | cut -c1-16)
    stamp=$dir/.ballast-requirements
    if [ -x "$dir/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ]; then
        log "$dir: up to date ($(basename "$req"))"
        return 0
    fi
    log "$dir: creating from $(basename "$req") with $PY ($("$PY" --version 2>&1))"
    rm -rf "$dir"
    "$PY" -m venv "$dir"
    "$dir/bin/pip" install -q --disable-pip-version-check --no-input -r "$req"
    echo "$sum" >"$stamp"
}
venv "$VENV" "$HERE/requirements-gns3-3.0.txt"
if [ "${SKIP_22:-0}" != 1 ]; then
    venv "$VENV22" "$HERE/requirements-gns3-2.2.txt"
    # GNS3 2.2's GUI checks an appliance file against its own JSON schema when it imports it:
    # its wheel (not installed: it needs Qt) is kept for validate.py to read that schema from.
    if ! ls "$VENV22"/gui/gns3_gui-2.2.61-*.whl >/dev/null 2>&1; then
        log "gns3-gui 2.2.61 wheel (for its appliance schema)"
        "$VENV22/bin/pip" download -q --disable-pip-version-check --no-deps gns3-gui==2.2.61 -d "$VENV22/gui"
    fi
fi
log "ok: $("$VENV/bin/python" -c 'import gns3server.version as v; print("gns3-server", v.__version__)')$(
    [ -x "$VENV22/bin/python" ] && "$VENV22/bin/python" -c 'import gns3server.version as v; print(", gns3-server", v.__version__)' 2>/dev/null | tr -d '\n')"
