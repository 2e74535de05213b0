#!/usr/bin/env bash
# Seed 004's LB cluster in network namespaces (DESIGN.md "Test network rules": nothing
# links to the machine's interfaces; documentation ranges for the public side):
#
#   ${P}rt   public router + client   eth0 198.51.100.1/24 (public)   eth1 10.10.0.1/24 (private)
#   ${P}lb1  LB01   eth0 198.51.100.11 (public)  eth1 10.10.0.11 (private)  eth2 10.99.0.11 (control)
#   ${P}lb2  LB02   eth0 198.51.100.12           eth1 10.10.0.12            eth2 10.99.0.12
#   ${P}wit  witness (Raft voter, no data plane)                            eth2 10.99.0.13
#   ${P}ops  the operator's console (API and CLI)                           eth2 10.99.0.2
#   ${P}web1..web4  web servers  eth0 10.10.0.21..24/24, default via 10.10.0.1 (the router)
#   ${P}sw   the switches: bridges pub, prv and ctl
#
# VIPs come from the LBs' ranges in 198.51.100.0/24, on the public segment: the router finds
# a VIP's owner by ARP, as seed 004's public router does. The control network (gossip, Raft,
# API) is a third segment so a test can cut a device's control links while its public link
# stays up (a partition). The router also routes between the segments, so web servers
# behind an L4 tunnel VIP answer clients directly (direct server return).
#
# usage: seed_topo.sh up PREFIX      build it (deletes an earlier one first)
#        seed_topo.sh down PREFIX    delete every namespace named ${PREFIX}*
#        seed_topo.sh cut PREFIX NS IFACE    partition: the switch stops carrying IFACE's
#                                    frames (taken off its bridge) while both ends of the
#                                    link stay up, so no daemon sees a link go down
#        seed_topo.sh heal PREFIX NS IFACE   put it back on its bridge
#
# Two facts of veth with native XDP shape it (see userspace/l4/README.md): a frame that XDP
# redirects into a veth is delivered only if its peer has GRO on (every switch port here),
# and packets made inside a namespace carry partial checksums that XDP redirect loses (tx
# checksum offload is off on the router and the web servers, which send to VIPs).
set -euo pipefail

cmd=${1:?usage: seed_topo.sh up|down PREFIX}
p=${2:?prefix}

nsx() { ip netns exec "$1" "${@:2}"; }

down() {
  for ns in $(ip netns list | awk '{print $1}' | grep "^${p}" || true); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
}

# link NS IFACE BRIDGE ADDR/LEN: a veth from NS (named IFACE) to a port of BRIDGE.
port=0
link() {
  local ns=$1 ifc=$2 br=$3 addr=$4
  port=$((port + 1))
  local sw="${br}${port}"
  ip link add "$ifc" netns "${p}$ns" type veth peer name "$sw" netns "${p}sw"
  nsx "${p}sw" ip link set "$sw" master "$br" up
  nsx "${p}sw" ethtool -K "$sw" gro on >/dev/null
  nsx "${p}$ns" ip addr add "$addr" dev "$ifc"
  nsx "${p}$ns" ip link set "$ifc" up
}

up() {
  down
  local all=(sw rt lb1 lb2 wit ops web1 web2 web3 web4)
  for ns in "${all[@]}"; do
    ip netns add "${p}$ns"
    nsx "${p}$ns" ip link set lo up
    nsx "${p}$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  done
  for br in pub prv ctl; do
    nsx "${p}sw" ip link add "$br" type bridge
    # A device's link coming back is forwarding at once (no STP listening delay).
    nsx "${p}sw" ip link set "$br" type bridge stp_state 0 forward_delay 0
    nsx "${p}sw" ip link set "$br" up
  done

  link rt eth0 pub 198.51.100.1/24
  link rt eth1 prv 10.10.0.1/24
  nsx "${p}rt" sysctl -qw net.ipv4.ip_forward=1
  nsx "${p}rt" ethtool -K eth0 tx off >/dev/null

  for i in 1 2; do
    link "lb$i" eth0 pub "198.51.100.1$i/24"
    link "lb$i" eth1 prv "10.10.0.1$i/24"
    link "lb$i" eth2 ctl "10.99.0.1$i/24"
    # Traffic from the private side to clients goes through the router.
    nsx "${p}lb$i" ip route add default via 198.51.100.1
  done
  link wit eth2 ctl 10.99.0.13/24
  link ops eth2 ctl 10.99.0.2/24

  for i in 1 2 3 4; do
    link "web$i" eth0 prv "10.10.0.2$i/24"
    nsx "${p}web$i" ip route add default via 10.10.0.1
    nsx "${p}web$i" ethtool -K eth0 tx off >/dev/null
  done
}

# The switch port at the other end of IFACE in NS (`eth2@if12`: index 12 in the switch).
switch_port() {
  local peer
  peer=$(nsx "${p}$1" ip -o link show "$2" | sed -n 's/^[0-9]*: [^@]*@if\([0-9]*\):.*/\1/p')
  nsx "${p}sw" ip -o link show | awk -F': ' -v i="$peer" '$1 == i { split($2, a, "@"); print a[1] }'
}

case $cmd in
  up) up ;;
  down) down ;;
  cut) nsx "${p}sw" ip link set "$(switch_port "$3" "$4")" nomaster ;;
  heal)
    sw=$(switch_port "$3" "$4")
    nsx "${p}sw" ip link set "$sw" master "${sw%%[0-9]*}" up
    ;;
  *) echo "usage: seed_topo.sh up|down|cut|heal PREFIX ..." >&2; exit 2 ;;
esac
