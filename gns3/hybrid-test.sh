#!/usr/bin/env bash
# The hybrid tier of the seed 004 topology: LB01 and LB02 are real appliance VMs (the image
# from images/build.sh, booted under qemu from config disks made by `run-topology.py configs`)
# on taps in the bridges that gns3/run-topology.py builds from gns3/seed004.gns3; the router
# and client, the witness, the operator's console and the four web servers are namespaces.
# The operator creates two tenants' groups with VIPs in LB01's range (acco01/web: L7 http on
# web1/web2; acco02/app: L4 IPIP tunnel on web3/web4), the client reaches both through LB01,
# then LB01's VM is killed (kill -9 of its qemu) and LB02 must serve both VIPs.
#
#   gns3/hybrid-test.sh [PREFIX]     (as root; after images/build.sh; default PREFIX hyb)
#
# Env: TIMEOUT (300 s per wait), BALLAST (host binary for the witness and the CLI; default
# target/release/ballast), IMAGE, QEMU_MEM, KEEP_TMP=1, HOLD_ON_FAIL=SECONDS.
# Everything it made (namespaces, taps, VMs, processes) goes on exit, failure included.
set -euo pipefail
TEST_NAME=hybrid-test
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
. "$REPO/images/test-lib.sh"

P=${1:-hyb}
case $P in *[!a-z0-9]* | "") echo "hybrid-test: PREFIX: lower-case letters and digits" >&2; exit 2 ;; esac
TIMEOUT=${TIMEOUT:-300}
B=$(realpath "${BALLAST:-$REPO/target/release/ballast}")
[ -x "$B" ] || { echo "hybrid-test: no ballast binary at $B" >&2; exit 1; }
RUN=(python3 "$HERE/run-topology.py" --vm lb1,lb2)
VIP_WEB=198.51.100.100 # both in LB01's range (seed 004: LB01 .100-.199)
VIP_APP=198.51.100.101

vm_prereqs
PIDS=()
vm_cleanup_extra() {
    local p
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "$1" != 0 ]; then
        echo "----- witness log (last lines) -----"
        tail -20 "$TMP/wit.log" 2>/dev/null || true
        echo "last /v1/lb/vips: $(api /v1/lb/vips | head -c 800)"
    fi
    "${RUN[@]}" down "$P" >/dev/null 2>&1 || true
}
trap vm_cleanup EXIT
trap 'exit 130' INT TERM

nsx() { local ns=$1; shift; ip netns exec "$P$ns" "$@"; }
api() { nsx ops curl -s -m 2 "http://10.99.0.13:8500$1" 2>/dev/null; }
cli() { nsx ops "$B" "$@" --http-addr 10.99.0.13:8500; }

log "topology from gns3/seed004.gns3, LB01 and LB02 as VMs on taps"
"${RUN[@]}" up "$P" | sed 's/^/   /'
"${RUN[@]}" configs "$TMP/cfg" >/dev/null
KEY=$(cat "$TMP/cfg/gossip.key")

# The two LB devices: NICs in the sidecar's adapter order (eth0 public, eth1 private,
# eth2 control), each on its tap in the switch namespace, where qemu runs.
VM_NETNS=${P}sw
nic() { # TAP MAC
    echo "-netdev tap,id=$1,ifname=$1,script=no,downscript=no -device virtio-net-pci,netdev=$1,mac=$2"
}
for i in 1 2; do
    vm_cfgdisk "lb$i" <"$TMP/cfg/lb$i.conf"
    # shellcheck disable=SC2046
    vm_start "lb$i" 1 disk $(nic "lb$i-eth0" "52:54:00:4b:00:1$i") $(nic "lb$i-eth1" "52:54:00:4b:01:1$i") \
        $(nic "lb$i-eth2" "52:54:00:4b:02:1$i")
done
LB1_PID=${VM_PIDS[0]}

# The witness: the host's ballast in its namespace, the third Raft voter.
mkdir -p "$TMP/wit"
cat >"$TMP/wit/config.json" <<EOF
{ "server": true, "bootstrap_expect": 3, "bind_addr": "10.99.0.13", "datacenter": "seed004",
  "data_dir": "$TMP/wit/data", "encrypt": "$KEY",
  "retry_join": ["10.99.0.11:8301", "10.99.0.12:8301", "10.99.0.13:8301"] }
EOF
nsx wit env RUST_LOG=info,openraft=warn "$B" agent -config-file "$TMP/wit/config.json" -node wit \
    >"$TMP/wit.log" 2>&1 &
PIDS+=($!)
for i in 1 2 3 4; do
    mkdir -p "$TMP/www$i"
    echo "web$i" >"$TMP/www$i/index.html"
    nsx "web$i" python3 -m http.server 80 --bind 0.0.0.0 --directory "$TMP/www$i" >/dev/null 2>&1 &
    PIDS+=($!)
done
log "started the witness (pid ${PIDS[0]}) and 4 web servers in namespaces"

three_peers() { [ "$(api /v1/status/peers | grep -o '"[^"]*"' | wc -l)" = 3 ]; }
wait_until "$TIMEOUT" "3 Raft peers (lb1 and lb2 booted, joined the witness)" three_peers
log "one cluster: peers $(api /v1/status/peers), leader $(api /v1/status/leader)"
cli device put wit --witness >/dev/null
DEVICES=""
three_alive() {
    DEVICES=$(api /v1/lb/devices) || return 1
    [ "$(echo "$DEVICES" | grep -o '"alive": *true' | wc -l)" = 3 ]
}
# lb1 and lb2 declare themselves (register=true on their config disks).
wait_until "$TIMEOUT" "lb1, lb2 (registered from their config disks) and wit alive" three_alive
log "devices: $(cli device list | tr '\n' ';' | tr -s ' ')"

cli group create acco01/web --listen 80:http --backend 10.10.0.21:80 --backend 10.10.0.22:80 \
    --vip "$VIP_WEB" >/dev/null
cli group create acco02/app --listen 80:tunnel --backend 10.10.0.23 --backend 10.10.0.24 \
    --vip "$VIP_APP" >/dev/null
# Tunnel backends (LVS-TUN): the VIP on lo, the IPIP header taken off by XDP.
for i in 3 4; do
    nsx "web$i" ip addr add "$VIP_APP/32" dev lo
    nsx "web$i" "$B" decap --iface eth0 >"$TMP/decap$i.log" 2>&1 &
    PIDS+=($!)
done
owner() { cli vip list | awk -v v="$1" '$1 == v { print $3 }'; }
owned_by() { [ "$(owner "$VIP_WEB")" = "$1" ] && [ "$(owner "$VIP_APP")" = "$1" ]; }
wait_until 60 "both VIPs placed on lb1" owned_by lb1
log "VIPs: $(cli vip list | tr '\n' ';' | tr -s ' ')"

# ask VIP COUNT: one new connection per request from the client; the answers counted
ask() { for _ in $(seq "$2"); do nsx rt curl -s -m 2 "http://$1/" || echo "(failed)"; done | sort | uniq -c | tr -s ' \n' ' '; }
answers() { nsx rt curl -s -m 2 "http://$1/" 2>/dev/null | grep -q '^web'; }
serves() { answers "$VIP_WEB" && answers "$VIP_APP"; }
wait_until "$TIMEOUT" "both VIPs answering through lb1's VM" serves
# Which MAC answers for the VIPs: LB01's public NIC.
mac() { nsx rt ip neigh show "$1" dev eth0 | awk '{ print $3 }'; }
[ "$(mac "$VIP_WEB")" = 52:54:00:4b:00:11 ] || fail "$VIP_WEB answered by $(mac "$VIP_WEB"), not lb1's eth0"
out_web=$(ask "$VIP_WEB" 10)
out_app=$(ask "$VIP_APP" 10)
log "through lb1 (ARP from 52:54:00:4b:00:11): $VIP_WEB (L7) ->$out_web; $VIP_APP (L4 tunnel) ->$out_app"
case $out_web$out_app in *failed*) fail "requests through lb1 failed" ;; esac
for w in web1 web2; do [[ $out_web == *$w* ]] || fail "L7 group: $w never answered"; done
for w in web3 web4; do [[ $out_app == *$w* ]] || fail "L4 group: $w never answered"; done

log "LB01 dies: kill -9 of its VM (qemu pid $LB1_PID)"
{ kill -9 "$LB1_PID"; wait "$LB1_PID"; } 2>/dev/null || true
KILLED=$(elapsed)
VM_PIDS=("${VM_PIDS[@]:1}") # wait_until checks the VMs still running: lb2
wait_until "$TIMEOUT" "both VIPs moved to lb2" owned_by lb2
MOVED=$(elapsed)
wait_until "$TIMEOUT" "both VIPs answering through lb2's VM" serves
SERVED=$(elapsed)
[ "$(mac "$VIP_WEB")" = 52:54:00:4b:00:12 ] || fail "$VIP_WEB answered by $(mac "$VIP_WEB") after the move, not lb2's eth0"
out_web=$(ask "$VIP_WEB" 10)
out_app=$(ask "$VIP_APP" 10)
log "through lb2 (ARP from 52:54:00:4b:00:12): $VIP_WEB ->$out_web; $VIP_APP ->$out_app"
case $out_web$out_app in *failed*) fail "requests through lb2 failed" ;; esac
for w in web1 web2; do [[ $out_web == *$w* ]] || fail "L7 group after the move: $w never answered"; done
for w in web3 web4; do [[ $out_app == *$w* ]] || fail "L4 group after the move: $w never answered"; done
# The L4 VIP went through XDP in lb2's VM (nothing listens on $VIP_APP:80 there): its
# packet counter on lb2's metrics page (the agent refreshes it every few seconds).
counted() {
    counted=$(nsx ops curl -s -m 2 http://10.99.0.12:8500/metrics | grep "^ballast_l4_vip_packets_total{.*vip=\"$VIP_APP\"" | head -1)
    [ -n "$counted" ] && [ "${counted##* }" != 0 ]
}
wait_until 30 "lb2's XDP counter for $VIP_APP above 0" counted
log "lb2's XDP: $counted"
dead=$(api /v1/lb/devices | tr '{' '\n' | grep '"name":"lb1"' | grep -o '"alive": *[a-z]*' || true)
log "lb1 in /v1/lb/devices: $dead"
awk -v k="$KILLED" -v m="$MOVED" -v s="$SERVED" 'BEGIN {
    printf "[hybrid-test] after the kill: VIPs owned by lb2 +%.1f s, both answering +%.1f s (TCG; 1 s polling)\n", m - k, s - k }'
log "PASS: LB01 and LB02 as appliance VMs in the seed 004 topology from gns3/seed004.gns3; L7 and L4 VIPs served by lb1, then by lb2 after lb1's VM was killed"
echo "1 passed, 0 failed"
