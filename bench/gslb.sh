#!/usr/bin/env bash
# DNS answers per second: ballast's GSLB (an agent answering for a group's name from the
# replicated LB state) against bind9 (Debian) serving the same name from a static zone,
# in the same run, measured by dnsperf over UDP. Everything runs in a network namespace
# this script makes (its loopback and a veth for the device's public side) and removes.
# As root. A benchmark, not a test: the figures are ratios, printed at the end.
#
#   sudo bench/gslb.sh [ROUNDS] [SECONDS]      (default 3 rounds of 10 s each, alternating)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-10}
NS=bgslb$$
B=${BALLAST:-target/release/ballast}
[ -x "$B" ] || { echo "gslb: build first (cargo build --release --bin ballast)" >&2; exit 1; }
need=()
for p in dnsperf bind9 bind9-dnsutils; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if ((${#need[@]})); then
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
work=$(mktemp -d /tmp/ballast-gslb.XXXXXX)
cleanup() {
  ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
nsx() { ip netns exec "$NS" "$@"; }

ip netns add "$NS"
nsx ip link set lo up
nsx ip link add pub0 type veth peer name pub1
nsx ip link set pub0 up
nsx ip link set pub1 up
nsx ip addr add 198.51.100.11/24 dev pub0

# One agent (a single-server cluster) that is also the LB device.
cat >"$work/agent.json" <<EOF
{ "server": true, "bootstrap_expect": 1, "bind_addr": "127.0.0.1", "data_dir": "$work/data",
  "ports": { "dns": 8600 }, "node_name": "lb1" }
EOF
nsx "$B" agent -config-file "$work/agent.json" -dev-insecure-rpc >"$work/agent.log" 2>&1 &
cli() { nsx "$B" "$@" --http-addr 127.0.0.1:8500 >/dev/null; }
for _ in $(seq 100); do
  nsx curl -sf http://127.0.0.1:8500/v1/status/leader | grep -q 8300 && break
  sleep 0.2
done
cli device put lb1 --range 198.51.100.100-198.51.100.110 --public-iface pub0 --public-addr 198.51.100.11/24
cli group create acco01/web --listen 8080:http --backend 10.10.0.21:80
for _ in $(seq 50); do
  nsx dig @127.0.0.1 -p 8600 +short web.acco01.ballast A | grep -q 198.51.100 && break
  sleep 0.2
done
answer=$(nsx dig @127.0.0.1 -p 8600 +short web.acco01.ballast A | head -1)

# bind9 with the same name in a static zone.
cat >"$work/ballast.zone" <<EOF
\$TTL 5
@   IN SOA ns.ballast. hostmaster.ballast. 1 3600 600 86400 5
@   IN NS  ns.ballast.
ns  IN A   127.0.0.1
web.acco01 IN A $answer
EOF
cat >"$work/named.conf" <<EOF
options { directory "$work"; listen-on port 5353 { 127.0.0.1; }; listen-on-v6 { none; };
          recursion no; pid-file "$work/named.pid"; };
zone "ballast" { type primary; file "$work/ballast.zone"; };
EOF
chmod 755 "$work"
nsx named -g -c "$work/named.conf" -u root >"$work/named.log" 2>&1 &
for _ in $(seq 50); do
  nsx dig @127.0.0.1 -p 5353 +short web.acco01.ballast A | grep -q . && break
  sleep 0.2
done

for _ in $(seq 1000); do echo "web.acco01.ballast A"; done >"$work/queries"
qps() { nsx dnsperf -s 127.0.0.1 -p "$1" -d "$work/queries" -l "$SECS" -c 4 -T 2 -q 200 2>&1 | awk '/Queries per second/ {print $4}'; }
echo "gslb: $ROUNDS rounds of ${SECS}s, dnsperf UDP, 4 clients, 200 queries in flight; A web.acco01.ballast"
b_all=(); n_all=()
for r in $(seq "$ROUNDS"); do
  b=$(qps 8600); n=$(qps 5353)
  b_all+=("$b"); n_all+=("$n")
  printf 'round %d: ballast %s q/s, bind9 %s q/s, ratio %.2f\n' "$r" "$b" "$n" "$(echo "$b / $n" | bc -l)"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mb=$(median "${b_all[@]}"); mn=$(median "${n_all[@]}")
printf 'median: ballast %s q/s, bind9 %s q/s, ballast/bind9 %.2f\n' "$mb" "$mn" "$(echo "$mb / $mn" | bc -l)"
