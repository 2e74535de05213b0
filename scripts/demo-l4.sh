#!/usr/bin/env bash
# The L4 data plane alone (`ballast lb`, no agent): VIPs balanced by XDP in namespaces.
# A client sends HTTP requests to two VIPs (one in tunnel mode with `ballast decap` on the
# backends, one in NAT mode); each backend answers with its name; the demo prints who
# answered, changes the backend set at runtime, and prints the LB's counters.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BALLAST:-target/release/ballast}
P=demo
T=scripts/topo.sh
work=$(mktemp -d /tmp/ballast-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  bash $T down $P
  rm -rf "$work"
}
trap cleanup EXIT

echo "== topology: client -> lb (XDP) -> bridge -> 4 backends, all in namespaces"
bash $T up $P 4
bash $T vips $P 198.51.100.10
for i in 1 2 3 4; do
  mkdir -p "$work/www$i"
  echo "backend b$i (10.0.0.1$i)" > "$work/www$i/index.html"
  ip netns exec ${P}b$i python3 -m http.server 80 --bind 0.0.0.0 --directory "$work/www$i" >/dev/null 2>&1 &
  pids+=($!)
  ip netns exec ${P}b$i python3 -m http.server 8080 --bind 0.0.0.0 --directory "$work/www$i" >/dev/null 2>&1 &
  pids+=($!)
  ip netns exec ${P}b$i "$B" decap --iface b0 >"$work/decap$i.log" 2>&1 &
  pids+=($!)
done

config() { # $1: tunnel backends, $2: nat backends
  cat <<EOC
[device]
tunnel_source_v4 = "10.0.0.1"

[[vip]]
name = "web-tunnel"
address = "198.51.100.10"
port = 80
protocol = "tcp"
mode = "tunnel"
backends = [$1]

[[vip]]
name = "web-nat"
address = "198.51.100.20"
port = 80
protocol = "tcp"
mode = "nat"
backends = [$2]
EOC
}
be() { local out=(); for i in "$@"; do out+=("{ address = \"10.0.0.1$i\" }"); done; (IFS=,; echo "${out[*]}"); }
ben() { local out=(); for i in "$@"; do out+=("{ address = \"10.0.0.1$i\", port = 8080 }"); done; (IFS=,; echo "${out[*]}"); }
config "$(be 1 2 3)" "$(ben 1 2 3)" > "$work/l4.toml"
echo "== config"; sed 's/^/   /' "$work/l4.toml"

ip netns exec ${P}l "$B" lb --iface l0 --also l1 --config "$work/l4.toml" --control "$work/lb.sock" >"$work/lb.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do "$B" stats --control "$work/lb.sock" >/dev/null 2>&1 && break; sleep 0.2; done
for i in 1 2 3 4; do # backends up?
  for _ in $(seq 50); do ip netns exec ${P}l curl -s -m 1 -o /dev/null "http://10.0.0.1$i:8080/" && break; sleep 0.2; done
done
sed 's/^/   lb: /' "$work/lb.log"

ask() { # $1 VIP, $2 count: one new connection per request
  for _ in $(seq "$2"); do
    ip netns exec ${P}c curl -s -m 3 "http://$1/" || echo "(failed)"
  done | sort | uniq -c | sed 's/^/   /'
}
echo "== 30 requests to the tunnel VIP 198.51.100.10:80 (IPIP to backends, they reply directly)"
ask 198.51.100.10 30
echo "== 30 requests to the NAT VIP 198.51.100.20:80 (rewritten to backend:8080 and back)"
ask 198.51.100.20 30

echo "== runtime change: remove b2, add b4 (only the changed Maglev slots are written)"
config "$(be 1 3 4)" "$(ben 1 3 4)" > "$work/l4.toml"
"$B" reload --control "$work/lb.sock" | sed 's/^/   /'
echo "== 30 more requests to each VIP"
ask 198.51.100.10 30
ask 198.51.100.20 30

echo "== what the load balancer counted (ballast stats)"
"$B" stats --control "$work/lb.sock" | sed 's/^/   /'
echo "== demo done"
