#!/usr/bin/env bash
# Runs the agent demo (scripts/demo.sh: seed 004's cluster, two tenants' groups, traffic
# through every VIP, LB01 killed, its VIPs on LB02, the failover timeline) on the topology
# built from gns3/seed004.gns3 by gns3/run-topology.py instead of scripts/seed_topo.sh. As root.
#
#   sudo gns3/scenario.sh [PREFIX]      (default PREFIX: g3demo; BALLAST=path/to/ballast)
#
# It first checks that the runner builds exactly what scripts/seed_topo.sh builds (both
# topologies dumped and compared, then removed), and pings between the nodes. Then the demo:
# when scripts/demo.sh takes TOPO=gns3 (and DEMO_PREFIX), it is run as it is; otherwise a copy
# of it (gns3/.demo-gns3.tmp.sh, removed on exit) with its topology script and prefix swapped.
# Every namespace it made is deleted on exit, failure included.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
P=${1:-g3demo}
[ "$(id -u)" = 0 ] || { echo "scenario: run as root" >&2; exit 1; }
case $P in *[!a-z0-9]* | "") echo "scenario: PREFIX: lower-case letters and digits" >&2; exit 2 ;; esac
B=${BALLAST:-$REPO/target/release/ballast}
for _ in $(seq 60); do [ -x "$B" ] && break; echo "scenario: waiting for $B" >&2; sleep 5; done
[ -x "$B" ] || { echo "scenario: no ballast binary at $B" >&2; exit 1; }
export BALLAST=$B
RUN="python3 $HERE/run-topology.py"
A=${P}a  # the runner's comparison copy
S=${P}b  # scripts/seed_topo.sh's (neither name a prefix of the other)
COPY=$HERE/.demo-gns3.tmp.sh
T0=$(date +%s.%N)
t() { awk -v a="$(date +%s.%N)" -v b="$T0" 'BEGIN{printf "%.1f", a-b}'; }
cleanup() {
    local rc=$?
    rm -f "$COPY"
    $RUN down "$P" >/dev/null 2>&1 || true
    $RUN down "$A" >/dev/null 2>&1 || true
    bash "$REPO/scripts/seed_topo.sh" down "$S" >/dev/null 2>&1 || true
    exit $rc
}
trap cleanup EXIT INT TERM

echo "== [$(t)s] the runner's topology vs scripts/seed_topo.sh's"
$RUN check
$RUN up "$A"
bash "$REPO/scripts/seed_topo.sh" up "$S"
if ! diff <($RUN dump "$A") <($RUN dump "$S"); then
    echo "scenario: the topology from seed004.gns3 differs from scripts/seed_topo.sh's (diff above)" >&2
    exit 1
fi
echo "   identical: $($RUN dump "$A" | grep -c '^\[') namespaces, $($RUN dump "$A" | grep -c ' veth ') veth ends: the same names, switch ports, addresses, routes, offloads, sysctls"
$RUN ping "$A"
$RUN down "$A" >/dev/null
bash "$REPO/scripts/seed_topo.sh" down "$S"

echo "== [$(t)s] the demo on the topology from gns3/seed004.gns3 (prefix $P)"
if grep -q 'TOPO' "$REPO/scripts/demo.sh" && grep -q 'DEMO_PREFIX' "$REPO/scripts/demo.sh"; then
    TOPO=gns3 DEMO_PREFIX=$P bash "$REPO/scripts/demo.sh"
else
    # scripts/demo.sh without the switch yet: a copy with its two lines swapped, one directory
    # below the repository's top like the original (it cds to "$(dirname "$0")/..").
    grep -q '^T=scripts/seed_topo.sh$' "$REPO/scripts/demo.sh" && grep -q '^P=demo$' "$REPO/scripts/demo.sh" ||
        { echo "scenario: scripts/demo.sh has neither TOPO=gns3 nor the lines T=scripts/seed_topo.sh and P=demo" >&2; exit 1; }
    sed -e 's|^T=scripts/seed_topo.sh$|T=gns3/topo.sh|' -e "s|^P=demo\$|P=$P|" "$REPO/scripts/demo.sh" >"$COPY"
    bash "$COPY"
fi
echo "== [$(t)s] scenario done; namespaces left with prefix $P: $(ip netns list | awk '{print $1}' | grep -c "^$P" || true)"
