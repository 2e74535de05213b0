#!/usr/bin/env bash
# ApacheBench through a VIP, side by side, in one run on one machine (not a test):
#   direct      client -> one backend, no load balancer (over the client's second NIC)
#   ballast-tun ballast XDP, tunnel mode (IPIP, backends reply straight to the client), 3 backends
#   ballast-dr  ballast XDP, direct routing (MAC rewrite, replies straight to the client), 3 backends
#   ballast-nat ballast XDP, NAT mode (replies back through the LB), 3 backends
#   haproxy     HAProxy (Debian) `mode tcp`, roundrobin, 3 backends
#   nginx       nginx (Debian) `stream` proxy, 3 backends
# Backends are nginx (1 worker) answering a short body. Every ab run is bounded (-n, -s).
# The topology is a DSR deployment's (topo.sh dsr): requests reach the VIPs through the
# LB, and the backends answer the client over the private segment, not through the LB
# (NAT replies excepted). Each scenario reaches the backends on its own 4-tuples (direct:
# 10.0.0.11:80 from the client; tunnel and DR: their VIP:80; NAT: backend:8080 from the
# client; proxies: from the LB's address), so one scenario's TIME_WAIT sockets on the
# backends never collide with the next one's SYNs (which shows up as 1 s retransmission
# stalls).
# Prints req/s (median of ROUNDS) and ratios to HAProxy; LB CPU per request: for XDP the
# kernel's BPF run-time statistics (kernel.bpf_stats_enabled), for the proxies their
# processes' CPU time. Saves bench/out/ab-<time>.csv and .png.
#
# usage: sudo bench/ab.sh            (N=20000 requests, C=32 concurrent, ROUNDS=3)
#        N=5000 ROUNDS=1 sudo bench/ab.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20000}
C=${C:-32}
ROUNDS=${ROUNDS:-3}
B=${BALLAST:-target/release/ballast}
P=ab
T=scripts/topo.sh
OUT=bench/out
mkdir -p "$OUT"
stamp=$(date +%Y%m%d-%H%M%S)
csv="$OUT/ab-$stamp.csv"
W=$(mktemp -d /tmp/ballast-ab.XXXXXX)
ulimit -n "$(ulimit -Hn)" || true
pids=()

[ -x "$B" ] || cargo build --release --bin ballast
command -v ab >/dev/null && command -v haproxy >/dev/null && command -v nginx >/dev/null || bash scripts/install.sh
command -v gnuplot >/dev/null || apt-get -o DPkg::Lock::Timeout=600 install -y -qq gnuplot-nox >/dev/null || true

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  sysctl -qw kernel.bpf_stats_enabled=0 || true
  bash $T down $P
  rm -rf "$W"
}
trap cleanup EXIT

bash $T up $P 3
bash $T dsr $P
bash $T vips $P 198.51.100.10 198.51.100.50
L=${P}l
ip netns exec $L ip addr add 198.51.100.30/32 dev lo
ip netns exec $L ip addr add 198.51.100.40/32 dev lo

for i in 1 2 3; do
  mkdir -p "$W/b$i"
  cat > "$W/b$i.conf" <<EOF
worker_processes 1;
daemon off;
pid $W/b$i.pid;
error_log $W/b$i.err warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $W/b$i; proxy_temp_path $W/b$i; fastcgi_temp_path $W/b$i;
  uwsgi_temp_path $W/b$i; scgi_temp_path $W/b$i;
  keepalive_requests 100000;
  server { listen 80 backlog=8192; listen 8080 backlog=8192; location / { return 200 "b$i\n"; } }
}
EOF
  ip netns exec ${P}b$i nginx -c "$W/b$i.conf" &
  pids+=($!)
done

cat > "$W/haproxy.cfg" <<EOF
global
  maxconn 9000
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
listen vip
  bind 198.51.100.30:80
  balance roundrobin
  server b1 10.0.0.11:80
  server b2 10.0.0.12:80
  server b3 10.0.0.13:80
EOF

cat > "$W/nginx-lb.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes auto;
daemon off;
pid $W/nginx-lb.pid;
error_log $W/nginx-lb.err warn;
events { worker_connections 16384; }
stream {
  upstream be { server 10.0.0.11:80; server 10.0.0.12:80; server 10.0.0.13:80; }
  server { listen 198.51.100.40:80 backlog=8192; proxy_pass be; }
}
EOF

cat > "$W/l4.toml" <<EOF
[device]
tunnel_source_v4 = "10.0.0.1"

[[vip]]
name = "tunnel"
address = "198.51.100.10"
port = 80
protocol = "tcp"
mode = "tunnel"
backends = [{ address = "10.0.0.11" }, { address = "10.0.0.12" }, { address = "10.0.0.13" }]

[[vip]]
name = "dr"
address = "198.51.100.50"
port = 80
protocol = "tcp"
mode = "dr"
backends = [{ address = "10.0.0.11" }, { address = "10.0.0.12" }, { address = "10.0.0.13" }]

[[vip]]
name = "nat"
address = "198.51.100.20"
port = 80
protocol = "tcp"
mode = "nat"
backends = [{ address = "10.0.0.11", port = 8080 }, { address = "10.0.0.12", port = 8080 }, { address = "10.0.0.13", port = 8080 }]
EOF

# CPU time (ns) of processes matching a pattern and their children (nginx workers):
# utime + stime from /proc/PID/stat.
cpu_ns() {
  local total=0 hz pids
  hz=$(getconf CLK_TCK)
  pids=$(pgrep -f "$1" || true)
  for p in $pids; do pids="$pids $(pgrep -P "$p" || true)"; done
  for pid in $pids; do
    local f
    f=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + f))
  done
  echo $((total * 1000000000 / hz))
}

# BPF run time (ns) of the XDP programs a process holds, from fdinfo (needs bpf_stats).
bpf_ns() {
  local pid=$1 total=0
  for f in /proc/"$pid"/fdinfo/*; do
    if grep -q '^prog_type:[[:space:]]*6$' "$f" 2>/dev/null; then
      local t
      t=$(awk '/^run_time_ns:/{print $2}' "$f")
      total=$((total + ${t:-0}))
    fi
  done
  echo "$total"
}

wait_url() { # from the client namespace
  for _ in $(seq 100); do
    ip netns exec ${P}c curl -s -m 1 -o /dev/null "http://$1/" && return 0
    sleep 0.1
  done
  echo "bench: $1 does not answer" >&2
  return 1
}

# run SCENARIO MODE ADDR CPU_KIND CPU_ARG: one bounded ab run, appends a CSV row.
run_ab() {
  local scen=$1 mode=$2 addr=$3 kind=$4 arg=$5 round=$6 kflag="" before after
  [ "$mode" = keepalive ] && kflag="-k"
  case $kind in
    bpf) before=$(bpf_ns "$arg") ;;
    proc) before=$(cpu_ns "$arg") ;;
    *) before=0 ;;
  esac
  local out
  out=$(timeout 120 ip netns exec ${P}c ab -q $kflag -n "$N" -c "$C" -s 10 "http://$addr/" 2>&1 || true)
  case $kind in
    bpf) after=$(bpf_ns "$arg") ;;
    proc) after=$(cpu_ns "$arg") ;;
    *) after=0 ;;
  esac
  local rps failed done_n
  rps=$(awk '/^Requests per second:/{print $4}' <<<"$out")
  failed=$(awk '/^Failed requests:/{print $3}' <<<"$out")
  done_n=$(awk '/^Complete requests:/{print $3}' <<<"$out")
  if [ -z "$rps" ]; then
    echo "bench: ab failed for $scen $mode: $(tail -3 <<<"$out")" >&2
    rps=0 failed=$N done_n=0
  fi
  local per=0
  [ "${done_n:-0}" -gt 0 ] && per=$(( (after - before) / done_n ))
  echo "$scen,$mode,$round,$rps,$failed,$per" >> "$csv"
  printf '  %-12s %-10s round %s: %10s req/s  failed %-5s LB CPU %6s ns/req\n' "$scen" "$mode" "$round" "$rps" "$failed" "$per"
}

echo "scenario,mode,round,rps,failed,lb_cpu_ns_per_req" > "$csv"
sysctl -qw kernel.bpf_stats_enabled=1
ip netns exec $L haproxy -f "$W/haproxy.cfg" -db >"$W/haproxy.log" 2>&1 &
pids+=($!)
ip netns exec $L nginx -c "$W/nginx-lb.conf" &
pids+=($!)
wait_url 10.0.0.11; wait_url 10.0.0.12; wait_url 10.0.0.13
wait_url 198.51.100.30; wait_url 198.51.100.40

start_ballast() {
  for i in 1 2 3; do
    ip netns exec ${P}b$i "$B" decap --iface b0 >"$W/decap$i.log" 2>&1 &
    pids+=($!)
  done
  ip netns exec $L "$B" lb --iface l0 --also l1 --config "$W/l4.toml" --control "$W/lb.sock" >"$W/lb.log" 2>&1 &
  LB_PID=$!
  pids+=($LB_PID)
  for _ in $(seq 100); do "$B" stats --control "$W/lb.sock" >/dev/null 2>&1 && break; sleep 0.1; done
  wait_url 198.51.100.10; wait_url 198.51.100.20; wait_url 198.51.100.50
  BPF_PID=$(pgrep -f "ballast lb --iface l0" | head -1)
}
stop_ballast() {
  pkill -f "ballast lb --iface l0" || true
  pkill -f "ballast decap --iface b0" || true
  sleep 0.5
}

echo "ab -n $N -c $C, $ROUNDS rounds, $(nproc) cores, kernel $(uname -r)"
for round in $(seq "$ROUNDS"); do
  for mode in newconn keepalive; do
    run_ab direct "$mode" 10.0.0.11 none - "$round"
    run_ab haproxy "$mode" 198.51.100.30 proc "haproxy -f $W/haproxy.cfg" "$round"
    run_ab nginx "$mode" 198.51.100.40 proc "nginx -c $W/nginx-lb.conf" "$round"
    start_ballast
    run_ab ballast-tun "$mode" 198.51.100.10 bpf "$BPF_PID" "$round"
    run_ab ballast-dr "$mode" 198.51.100.50 bpf "$BPF_PID" "$round"
    run_ab ballast-nat "$mode" 198.51.100.20 bpf "$BPF_PID" "$round"
    stop_ballast
  done
done

echo
echo "median of $ROUNDS rounds (ratios of req/s to direct's and HAProxy's; LB CPU per request):"
python3 - "$csv" <<'PY'
import csv, sys, statistics as st
rows = list(csv.DictReader(open(sys.argv[1])))
res = {}
for r in rows:
    k = (r["scenario"], r["mode"])
    res.setdefault(k, {"rps": [], "cpu": [], "failed": 0})
    res[k]["rps"].append(float(r["rps"]))
    res[k]["cpu"].append(int(r["lb_cpu_ns_per_req"]))
    res[k]["failed"] += int(r["failed"])
order = ["direct", "ballast-tun", "ballast-dr", "ballast-nat", "haproxy", "nginx"]
for mode in ["newconn", "keepalive"]:
    hp = st.median(res[("haproxy", mode)]["rps"])
    hp_cpu = st.median(res[("haproxy", mode)]["cpu"]) or 1
    direct = st.median(res[("direct", mode)]["rps"]) or 1
    print(f"  {mode}:")
    for s in order:
        r = res.get((s, mode))
        if not r:
            continue
        rps, cpu = st.median(r["rps"]), st.median(r["cpu"])
        cpu_s = f"{cpu:7d} ns/req ({cpu / hp_cpu:5.2f}x HAProxy's)" if s != "direct" else "      - (no LB)"
        print(f"    {s:12s} {rps:10.0f} req/s  {rps / direct:5.2f}x direct  {rps / hp:5.2f}x HAProxy   LB CPU {cpu_s}  failed {r['failed']}")
PY

if command -v gnuplot >/dev/null; then
  python3 - "$csv" > "$W/plot.dat" <<'PY'
import csv, sys, statistics as st
rows = list(csv.DictReader(open(sys.argv[1])))
for s in ["direct", "ballast-tun", "ballast-dr", "ballast-nat", "haproxy", "nginx"]:
    v = [st.median([float(r["rps"]) for r in rows if r["scenario"] == s and r["mode"] == m] or [0]) for m in ["newconn", "keepalive"]]
    print(s, v[0], v[1])
PY
  gnuplot <<EOF
set terminal png size 900,500
set output "$OUT/ab-$stamp.png"
set title "ab -n $N -c $C through a VIP (median of $ROUNDS rounds, $(nproc) cores)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set ylabel "requests/s"
set yrange [0:*]
set key top right
plot "$W/plot.dat" using 2:xtic(1) title "new connection per request", '' using 3 title "keep-alive"
EOF
  echo "chart: $OUT/ab-$stamp.png"
fi
echo "csv:   $csv"
