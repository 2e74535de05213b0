#!/usr/bin/env bash
# The test network of the L4 demo, end-to-end tests and bench, built from network
# namespaces (DESIGN.md "Test network rules": nothing links to the machine's interfaces).
#
#   client ns (c0 203.0.113.2, 2001:db8:1::2)
#     └── veth ── lb ns: l0 203.0.113.1, 2001:db8:1::1   (public side, VIPs routed here)
#                        l1 10.0.0.1, fd00::1           (private side)
#                          └── veth ── switch ns: bridge br0
#                                        ├── backend ns b1: b0 10.0.0.11, fd00::11
#                                        ├── backend ns b2: b0 10.0.0.12, fd00::12
#                                        └── ...
#
# usage: topo.sh up PREFIX N      build it with N backends (namespaces ${PREFIX}c, l, s, b1..bN)
#        topo.sh down PREFIX      delete every namespace named ${PREFIX}*
#        topo.sh vips PREFIX ADDR...  put VIP addresses on the backends' lo (tunnel and dr modes)
#        topo.sh dsr PREFIX       a return path that bypasses the LB, as in a real DSR
#                                 deployment: the client gets a second NIC on the backends'
#                                 segment (c1 10.0.0.2, fd00::2) and the backends answer
#                                 the client through it, except NAT replies (source port
#                                 8080, the port NAT backends listen on), which must come
#                                 back through the LB to be rewritten
#
# Two facts of veth with native XDP shape it (see userspace/README.md):
# - a frame XDP_REDIRECTed into a veth is delivered only if its peer runs an XDP program
#   or has GRO on: GRO is turned on where the load balancer redirects to (c0, s0);
# - packets made inside a namespace carry partial checksums that XDP redirect loses: tx
#   checksum offload is turned off on the hosts that send (c0, b0).
set -euo pipefail

cmd=${1:?usage: topo.sh up|down|vips PREFIX ...}
p=${2:?prefix}

nsx() { ip netns exec "$1" "${@:2}"; }

down() {
  for ns in $(ip netns list | awk '{print $1}' | grep "^${p}" || true); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
}

up() {
  local n=${1:?number of backends}
  down
  for ns in c l s; do ip netns add "${p}$ns"; done
  for i in $(seq 1 "$n"); do ip netns add "${p}b$i"; done
  for ns in $(ip netns list | awk '{print $1}' | grep "^${p}"); do
    nsx "$ns" ip link set lo up
    nsx "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  done

  # client <-> lb (public)
  ip link add c0 netns "${p}c" type veth peer name l0 netns "${p}l"
  nsx "${p}c" ip addr add 203.0.113.2/24 dev c0
  nsx "${p}c" ip addr add 2001:db8:1::2/64 dev c0 nodad
  nsx "${p}c" ip link set c0 up
  nsx "${p}c" ip route add default via 203.0.113.1
  nsx "${p}c" ip -6 route add default via 2001:db8:1::1
  nsx "${p}c" ethtool -K c0 tx off gro on >/dev/null

  nsx "${p}l" ip addr add 203.0.113.1/24 dev l0
  nsx "${p}l" ip addr add 2001:db8:1::1/64 dev l0 nodad
  nsx "${p}l" ip link set l0 up
  nsx "${p}l" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1

  # lb <-> switch (private)
  ip link add l1 netns "${p}l" type veth peer name s0 netns "${p}s"
  nsx "${p}l" ip addr add 10.0.0.1/24 dev l1
  nsx "${p}l" ip addr add fd00::1/64 dev l1 nodad
  nsx "${p}l" ip link set l1 up
  nsx "${p}s" ip link add br0 type bridge
  nsx "${p}s" ip link set br0 up
  nsx "${p}s" ip link set s0 master br0 up
  nsx "${p}s" ethtool -K s0 gro on >/dev/null

  for i in $(seq 1 "$n"); do
    local b="${p}b$i"
    ip link add b0 netns "$b" type veth peer name "s$i" netns "${p}s"
    nsx "${p}s" ip link set "s$i" master br0 up
    nsx "$b" ip addr add "10.0.0.1$i/24" dev b0
    nsx "$b" ip addr add "fd00::1$i/64" dev b0 nodad
    nsx "$b" ip link set b0 up
    nsx "$b" ip route add default via 10.0.0.1
    nsx "$b" ip -6 route add default via fd00::1
    nsx "$b" ethtool -K b0 tx off >/dev/null
  done
}

vips() {
  for ns in $(ip netns list | awk '{print $1}' | grep "^${p}b"); do
    # As LVS real servers: never answer ARP for, nor announce from, the VIPs on lo.
    nsx "$ns" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
    for a in "$@"; do
      if [[ $a == *:* ]]; then
        nsx "$ns" ip addr add "$a/128" dev lo nodad
      else
        nsx "$ns" ip addr add "$a/32" dev lo
      fi
    done
  done
}

dsr() {
  ip link add c1 netns "${p}c" type veth peer name sc netns "${p}s"
  nsx "${p}s" ip link set sc master br0 up
  nsx "${p}c" ip addr add 10.0.0.2/24 dev c1
  nsx "${p}c" ip addr add fd00::2/64 dev c1 nodad
  nsx "${p}c" ip link set c1 up
  nsx "${p}c" ethtool -K c1 tx off >/dev/null
  for ns in $(ip netns list | awk '{print $1}' | grep "^${p}b"); do
    nsx "$ns" ip route add 203.0.113.0/24 via 10.0.0.2
    nsx "$ns" ip -6 route add 2001:db8:1::/64 via fd00::2
    # NAT replies still go through the LB, which rewrites their source back to the VIP.
    nsx "$ns" ip rule add ipproto tcp sport 8080 table 100
    nsx "$ns" ip -6 rule add ipproto tcp sport 8080 table 100
    nsx "$ns" ip route add default via 10.0.0.1 table 100
    nsx "$ns" ip -6 route add default via fd00::1 table 100
  done
}

case $cmd in
  up) up "${3:?number of backends}" ;;
  down) down ;;
  vips) vips "${@:3}" ;;
  dsr) dsr ;;
  *) echo "usage: topo.sh up|down|vips|dsr PREFIX ..." >&2; exit 2 ;;
esac
