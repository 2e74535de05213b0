#!/usr/bin/env bash
# The main job, shown: seed 004's LB cluster in network namespaces (scripts/seed_topo.sh).
# LB01, LB02 and a witness run `ballast agent`; the operator declares the devices and
# creates two tenants' groups through the CLI (acco01: L7 http with cookie persistence on
# web1/web2; acco02: L4 IPIP tunnel on web3/web4); the demo prints each VIP's owner, sends
# traffic through every VIP, kills LB01 (kill -9 and its links down), shows its VIPs on
# LB02 and the traffic back, and prints the failover timeline from the events.
set -euo pipefail
cd "$(dirname "$0")/.."
B=$(realpath "${BALLAST:-target/release/ballast}")
P=${DEMO_PREFIX:-demo}
T=scripts/seed_topo.sh
# The same topology built from gns3/seed004.gns3 (gns3/README.md).
if [[ ${TOPO:-} == gns3 ]]; then T=gns3/topo.sh; fi
work=$(mktemp -d /tmp/ballast-demo.XXXXXX)
pids=()
cleanup() {
  { for p in "${pids[@]}"; do kill -9 "$p" || true; done; wait; } 2>/dev/null || true
  bash $T down $P
  rm -rf "$work"
}
trap cleanup EXIT
nsx() { local ns=$1; shift; ip netns exec "$P$ns" "$@"; }
cli() { nsx ops "$B" "$@" --http-addr 10.99.0.13:8500; }
ctl_ip() { case $1 in lb1) echo 10.99.0.11 ;; lb2) echo 10.99.0.12 ;; wit) echo 10.99.0.13 ;; esac; }

echo "== topology: router+client, LB01, LB02 (public, private, control NICs), witness, 4 web servers"
bash $T up $P
key=$("$B" keygen)
for i in 1 2 3 4; do
  mkdir -p "$work/www$i"
  echo "web$i (10.10.0.2$i)" >"$work/www$i/index.html"
  nsx web$i python3 -m http.server 80 --bind 0.0.0.0 --directory "$work/www$i" >/dev/null 2>&1 &
  pids+=($!)
done

echo "== agents: lb1, lb2 and the witness, a 3-voter Raft cluster on the control network"
declare -A agent
for n in lb1 lb2 wit; do
  mkdir -p "$work/$n"
  cat >"$work/$n/config.json" <<EOC
{ "server": true, "bootstrap_expect": 3, "bind_addr": "$(ctl_ip $n)", "datacenter": "seed004",
  "data_dir": "$work/$n/data", "encrypt": "$key",
  "retry_join": ["10.99.0.11:8301", "10.99.0.12:8301", "10.99.0.13:8301"] }
EOC
  nsx $n env RUST_LOG=info,openraft=warn "$B" agent -config-file "$work/$n/config.json" -node $n \
    >"$work/$n.log" 2>&1 &
  agent[$n]=$!
  pids+=($!)
done
for _ in $(seq 100); do
  leader=$(nsx ops curl -s -m 1 http://10.99.0.13:8500/v1/status/leader || true)
  [[ $leader == *:* ]] && break
  sleep 0.2
done
echo "   leader: $leader"

echo "== devices (seed 004's ranges, here in 198.51.100.0/24) and the witness"
cli device put lb1 --range 198.51.100.100-198.51.100.149 --public-iface eth0 --public-addr 198.51.100.11/24 \
  --private-iface eth1 --private-addr 10.10.0.11/24 | sed 's/^/   /'
cli device put lb2 --range 198.51.100.150-198.51.100.199 --public-iface eth0 --public-addr 198.51.100.12/24 \
  --private-iface eth1 --private-addr 10.10.0.12/24 | sed 's/^/   /'
cli device put wit --witness | sed 's/^/   /'
for _ in $(seq 100); do
  [[ $(nsx ops curl -s http://10.99.0.13:8500/v1/lb/devices | grep -o '"alive":true' | wc -l) == 3 ]] && break
  sleep 0.2
done
cli device list | sed 's/^/   /'

echo "== groups: acco01/web (L7 http, cookie SRV) and acco02/app (L4 tunnel)"
cli group create acco01/web --listen 80:http --backend 10.10.0.21:80 --backend 10.10.0.22:80 --cookie SRV \
  | sed 's/^/   /'
cli group create acco02/app --listen 80:tunnel --backend 10.10.0.23 --backend 10.10.0.24 | sed 's/^/   /'
web=$(cli vip list | awk '$2 == "acco01/web" { print $1 }')
app=$(cli vip list | awk '$2 == "acco02/app" { print $1 }')
# Tunnel backends (LVS-TUN / direct server return): the VIP on lo, IPIP taken off by XDP.
for i in 3 4; do
  nsx web$i ip addr add "$app/32" dev lo
  nsx web$i "$B" decap --iface eth0 >"$work/decap$i.log" 2>&1 &
  pids+=($!)
done
echo "== VIP owners"
cli vip list | sed 's/^/   /'

served() { # $1 VIP: true once it answers
  for _ in $(seq 100); do nsx rt curl -s -m 1 -o /dev/null "http://$1/" && return 0; sleep 0.1; done
  return 1
}
ask() { # $1 VIP, $2 count: a new connection per request; who answered
  for _ in $(seq "$2"); do nsx rt curl -s -m 2 "http://$1/" || echo "(failed)"; done | sort | uniq -c | sed 's/^/   /'
}
served "$web"; served "$app"
echo "== 20 requests to acco01/web at $web (L7: LB -> web1/web2)"
ask "$web" 20
echo "== cookie persistence: a client that keeps the SRV cookie stays on one server"
jar="$work/cookies"
for _ in 1 2 3 4 5; do nsx rt curl -s -m 2 -b "$jar" -c "$jar" "http://$web/"; done | sort | uniq -c | sed 's/^/   /'
echo "== 20 requests to acco02/app at $app (L4: XDP -> IPIP -> web3/web4, replies direct)"
ask "$app" 20

victim=$(cli vip list | awk -v v="$web" '$1 == v { print $3 }')
echo "== $victim dies: its links down and kill -9 (it owns $web)"
since=$(cli events | tail -1 | sed 's/^#\([0-9]*\).*/\1/')
killed=$(date +%s%3N)
for nic in eth2 eth0 eth1; do nsx "$victim" ip link set $nic down; done
{ kill -9 "${agent[$victim]}"; wait "${agent[$victim]}"; } 2>/dev/null || true
for _ in $(seq 100); do
  owner=$(cli vip list | awk -v v="$web" '$1 == v { print $3 }')
  [[ $owner != "$victim" ]] && break
  sleep 0.1
done
echo "== VIP owners after the failure"
cli vip list | sed 's/^/   /'
served "$web"; served "$app"
echo "== 20 requests to each VIP again"
ask "$web" 20
ask "$app" 20
# first_packet is recorded by the new owner a moment after the traffic it saw.
for _ in $(seq 20); do
  cli events --since "$since" | grep vip_moved | grep -q first_packet= && break
  sleep 0.1
done
echo "== failover timeline (ballast events; ms after the kill)"
cli events --since "$since" | grep vip_moved | while read -r line; do
  echo "   ${line%% address_added=*}"
  for phase in detected decided committed address_added arp_sent first_packet; do
    at=$(grep -o " $phase=[0-9]*" <<<"$line" | cut -d= -f2)
    [[ -n $at ]] && printf '      %-14s +%d ms\n' "$phase" $((at - killed))
  done
done
echo "== demo done"
