#!/usr/bin/env bash
# Boots three appliance VMs (LB devices lb01 and lb02, and a witness) on a shared L2 and
# waits until they form one cluster: /v1/status/peers lists all three servers.
#
#   images/cluster-test.sh         (as root; after images/build.sh)
#
# The L2s are Linux bridges inside a network namespace this script creates and deletes
# (the host's own interfaces are never touched): "private" 10.99.0.0/24 (every VM, and the
# namespace itself at 10.99.0.1, from where the APIs are queried) and "public"
# 198.51.100.0/24 (the two LB devices' second NIC). lb01 and lb02 boot through GRUB with
# config disks; the witness boots with qemu -kernel and its settings on the kernel
# command line, so both ways of configuring the appliance are exercised.
# Env: TIMEOUT (300 s), IMAGE, QEMU_MEM, KEEP_TMP=1.
set -euo pipefail
TEST_NAME=cluster-test
. "$(dirname "${BASH_SOURCE[0]}")/test-lib.sh"

TIMEOUT=${TIMEOUT:-300}
NS=ballast-ct-$$
VM_NETNS=$NS

vm_prereqs
DEVICES=""
vm_cleanup_extra() {
    [ "$1" = 0 ] || [ -z "$DEVICES" ] || echo "last /v1/lb/devices: ${DEVICES:0:600}"
    [ "$1" = 0 ] || [ -z "${OWNER_IP:-}" ] || { echo "owner's metrics:"; api "$OWNER_IP" /metrics | grep ballast_l4 | head -20; }
    ip netns del "$NS" 2>/dev/null || true
}
trap vm_cleanup EXIT

in_ns() { ip netns exec "$NS" "$@"; }
log "network namespace $NS: bridges priv (10.99.0.1/24) and pub (198.51.100.1/24), 5 taps"
ip netns add "$NS"
in_ns ip link set lo up
for br in priv pub; do
    in_ns ip link add "$br" type bridge
    in_ns ip link set "$br" up
done
in_ns ip addr add 10.99.0.1/24 dev priv
in_ns ip addr add 198.51.100.1/24 dev pub
tap() { # NAME BRIDGE
    in_ns ip tuntap add "$1" mode tap
    in_ns ip link set "$1" master "$2" up
}
tap lb01-pub pub; tap lb01-priv priv
tap lb02-pub pub; tap lb02-priv priv
tap wit-priv priv

KEY=$(gossip_key)
JOIN=10.99.0.11,10.99.0.12,10.99.0.13
nic() { # TAP MAC
    echo "-netdev tap,id=$1,ifname=$1,script=no,downscript=no -device virtio-net-pci,netdev=$1,mac=$2"
}

# LB devices: eth0 public, eth1 private; the agent binds to the private address. VIP
# ranges split as in seed 004.
RANGE=([1]=198.51.100.100-198.51.100.149 [2]=198.51.100.150-198.51.100.199)
for i in 1 2; do
    cat <<EOF | vm_cfgdisk "lb0$i"
# lb0$i: an LB device
node=lb0$i
role=device
addr=eth0:198.51.100.1$i/24
addr=eth1:10.99.0.1$i/24
bind=eth1
join=$JOIN
encrypt=$KEY
datacenter=seed
register=true
public=eth0
private=eth1
vip_range=${RANGE[$i]}
EOF
    # shellcheck disable=SC2046
    vm_start "lb0$i" 1 disk $(nic "lb0$i-pub" "52:54:00:00:01:0$i") $(nic "lb0$i-priv" "52:54:00:00:02:0$i")
done
# shellcheck disable=SC2046
vm_start witness 1 "kernel:systemd.journald.forward_to_console=1 ballast.node=witness ballast.role=witness \
ballast.addr=eth0:10.99.0.13/24 ballast.join=$JOIN ballast.encrypt=$KEY ballast.datacenter=seed ballast.register=true" \
    $(nic wit-priv 52:54:00:00:02:03)

api() { in_ns curl -s -m 2 "http://$1:8500$2" 2>/dev/null; }
declare -A UP=()
all_up() { # notes when each agent's API first answers
    local ip ok=1
    for ip in 10.99.0.11 10.99.0.12 10.99.0.13; do
        if [ -z "${UP[$ip]:-}" ]; then
            if api "$ip" /v1/status/leader >/dev/null; then UP[$ip]=1; log "API up on $ip"; else ok=0; fi
        fi
    done
    [ $ok = 1 ]
}
three_peers() {
    local p n
    p=$(api 10.99.0.11 /v1/status/peers) || return 1
    n=$(echo "$p" | grep -o '"[^"]*"' | wc -l)
    [ "$n" = 3 ] || return 1
    PEERS=$p
}
wait_until "$TIMEOUT" "the three agents' APIs" all_up
wait_until "$TIMEOUT" "3 peers at 10.99.0.11:8500/v1/status/peers" three_peers
FORMED=$(elapsed)
log "cluster formed after ${FORMED}s: peers $PEERS"
L1=$(api 10.99.0.11 /v1/status/leader)
for ip in 10.99.0.12 10.99.0.13; do
    l=$(api "$ip" /v1/status/leader)
    [ "$l" = "$L1" ] || fail "$ip sees leader $l, 10.99.0.11 sees $L1"
done
log "all three agree on leader $L1"
# The LB devices' public NICs came up from their config disks too (the API listens on
# every address: client_addr 0.0.0.0).
for ip in 198.51.100.11 198.51.100.12; do
    api "$ip" /v1/status/leader >/dev/null || fail "no API answer on $ip (public NIC)"
done
log "the LB devices' public NICs answer: 198.51.100.11, 198.51.100.12"
# register=true: each VM declared itself (lb01, lb02 as devices with their NICs and VIP
# ranges, the witness as a witness) once the cluster had a leader.
three_devices() {
    DEVICES=$(api 10.99.0.11 /v1/lb/devices) || return 1
    [ "$(echo "$DEVICES" | grep -o '"alive": *true' | wc -l)" = 3 ]
}
wait_until "$TIMEOUT" "3 alive devices at /v1/lb/devices" three_devices
log "3 devices registered and alive after $(elapsed)s: $(echo "$DEVICES" | grep -o '"name":"[^"]*"\|"witness":[a-z]*' | tr '\n' ' ')"

# The agent, running as user ballast with only its capabilities, serves an L4 VIP: the
# owner adds the VIP address (netlink), answers ARP for it, and its XDP program counts
# the VIP's packets. (Tunnel mode; there are no backends behind it, nothing answers.)
CLI=${BALLAST_CLI:-$(dirname "$IMAGES")/target/release/ballast}
if [ -x "$CLI" ]; then
    out=$(in_ns "$CLI" group create acco02/app --listen 80:tunnel --backend 10.99.0.21 \
        --backend 10.99.0.22 --http-addr 10.99.0.11:8500 2>&1) || fail "group create: $out"
    VIP=$(echo "$out" | awk '{for (i = 1; i < NF; i++) if ($i == "vip") print $(i + 1)}' | head -1)
    [ -n "$VIP" ] || fail "no VIP in: $out"
    log "L4 group acco02/app: VIP $VIP"
    OWNER=""
    owner() {
        OWNER=$(api 10.99.0.11 /v1/lb/vips | tr '{' '\n' | grep "\"vip\":\"$VIP\"" |
            sed -n 's/.*"owner":"\([^"]*\)".*/\1/p')
        [ -n "$OWNER" ]
    }
    wait_until 120 "an owner for $VIP" owner
    n=${OWNER#lb0}
    OWNER_IP=10.99.0.1$n
    OWNER_MAC=52:54:00:00:01:0$n
    held() { # the owner holds the VIP as an address: it answers ARP for it
        in_ns curl -s -m 1 -o /dev/null "http://$VIP/" || true
        in_ns ip neigh show "$VIP" dev pub | grep -q "lladdr $OWNER_MAC"
    }
    wait_until 120 "$OWNER ($OWNER_MAC) answering ARP for $VIP" held
    log "VIP $VIP held by $OWNER: ARP answered from $OWNER_MAC (the agent added the address)"
    # The XDP program on the owner's public NIC: its packet counter for the VIP where the
    # agent exports metrics, else the kernel's note of the attach on the console.
    metric() { api "$OWNER_IP" /metrics | grep "^ballast_l4_vip_packets_total{.*vip=\"$VIP\"" | head -1; }
    if api "$OWNER_IP" /metrics | grep -q '^# \|^ballast_'; then
        counted() {
            in_ns curl -s -m 1 -o /dev/null "http://$VIP/" || true
            metric | grep -qv ' 0$'
        }
        wait_until 60 "$OWNER's XDP counting packets to $VIP" counted
        log "XDP on $OWNER counted: $(metric)"
    elif grep -aq 'eth0: XDP' "$TMP/$OWNER.console"; then
        log "XDP attached on $OWNER's eth0 (kernel: $(grep -ao 'eth0: XDP.*' "$TMP/$OWNER.console" | head -1 | cut -c1-60)...)"
    else
        log "note: this agent exports no /metrics and the kernel logged no XDP attach; not checked"
    fi
else
    log "skipping the L4 VIP check: no ballast CLI at $CLI (BALLAST_CLI=...)"
fi
log "PASS: three VMs (lb01, lb02, witness) formed one cluster in ${FORMED}s, registered as LB devices${VIP:+, served L4 VIP $VIP} (TCG)"
echo "1 passed, 0 failed"
