#!/usr/bin/env bash
# L7 side by side (not a test): ballast proxy vs HAProxy 2.6 vs nginx 1.22, same machine,
# same run, same backends (3 nginx, 1 worker each), all on loopback, equivalent configs:
# round robin, keep-alive and connection reuse to the backends, TLS 1.3 with one ECDSA
# P-256 certificate. Figures, each a bounded run:
#   keepalive  wrk -c C -d D (HTTP/1.1 keep-alive): req/s, p50 and p99 latency
#   newconn    ab -n N -c C (a new connection per request): req/s
#   tls        ab -n N -c C over https (a full TLS handshake per request): handshakes/s
# plus each proxy's CPU time per request (user + system of its processes).
# Prints ratios to HAProxy; saves bench/out/l7-<time>.csv.
#
# usage: sudo bench/l7.sh      (N=10000 C=32 D=5s)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
C=${C:-32}
D=${D:-5s}
B=${BALLAST:-target/release/ballast}
OUT=bench/out
mkdir -p "$OUT"
csv="$OUT/l7-$(date +%Y%m%d-%H%M%S).csv"
W=$(mktemp -d /tmp/ballast-l7.XXXXXX)
ulimit -n "$(ulimit -Hn)" || true
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
[ -x "$B" ] || cargo build --release --bin ballast
command -v wrk >/dev/null && command -v ab >/dev/null || bash scripts/install.sh

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -keyout "$W/key.pem" -out "$W/crt.pem" -subj "/CN=bench.example" \
  -addext "subjectAltName=DNS:bench.example" 2>/dev/null
cat "$W/crt.pem" "$W/key.pem" > "$W/both.pem"

for i in 1 2 3; do
  mkdir -p "$W/b$i"
  cat > "$W/b$i.conf" <<EOF
worker_processes 1; daemon off; pid $W/b$i.pid; error_log $W/b$i.err warn;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $W/b$i; proxy_temp_path $W/b$i; fastcgi_temp_path $W/b$i; uwsgi_temp_path $W/b$i; scgi_temp_path $W/b$i;
  server { listen 127.0.0.1:1910$i backlog=8192; location / { return 200 "b$i\n"; } } }
EOF
  nginx -c "$W/b$i.conf" & pids+=($!)
done

cat > "$W/ballast.cfg" <<EOF
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    maxconn 20000
listen web
    bind 127.0.0.1:19201
    bind 127.0.0.1:19202 ssl crt $W/both.pem alpn http/1.1
    balance roundrobin
    server b1 127.0.0.1:19101
    server b2 127.0.0.1:19102
    server b3 127.0.0.1:19103
EOF
sed -e 's/19201/19301/; s/19202/19302/' "$W/ballast.cfg" | sed '1i global\n    maxconn 9000\n    ssl-default-bind-options ssl-min-ver TLSv1.3' > "$W/haproxy.cfg"

cat > "$W/nginx.conf" <<EOF
worker_processes auto; daemon off; pid $W/nginx.pid; error_log $W/nginx.err warn;
events { worker_connections 16384; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $W; proxy_temp_path $W; fastcgi_temp_path $W; uwsgi_temp_path $W; scgi_temp_path $W;
  upstream be { server 127.0.0.1:19101; server 127.0.0.1:19102; server 127.0.0.1:19103; keepalive 128; }
  server { listen 127.0.0.1:19401 backlog=8192; listen 127.0.0.1:19402 ssl backlog=8192;
    ssl_certificate $W/crt.pem; ssl_certificate_key $W/key.pem; ssl_protocols TLSv1.3;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF

"$B" proxy -f "$W/ballast.cfg" >"$W/ballast.log" 2>&1 & pids+=($!)
haproxy -db -f "$W/haproxy.cfg" >"$W/haproxy.log" 2>&1 & pids+=($!)
nginx -c "$W/nginx.conf" & pids+=($!)
sleep 1

cpu_ns() { # processes matching $1 and their children
  local total=0 hz pids
  hz=$(getconf CLK_TCK)
  pids=$(pgrep -f "$1" || true)
  for p in $pids; do pids="$pids $(pgrep -P "$p" || true)"; done
  for pid in $pids; do total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0))); done
  echo $((total * 1000000000 / hz))
}

echo "proxy,metric,value,p50_ms,p99_ms,cpu_ns_per_req" > "$csv"
run() { # name pattern plain_port tls_port
  local name=$1 pat=$2 port=$3 tport=$4 before after out rps p50 p99 n
  before=$(cpu_ns "$pat")
  out=$(wrk -t 2 -c "$C" -d "$D" --latency "http://127.0.0.1:$port/" 2>&1)
  after=$(cpu_ns "$pat")
  rps=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
  n=$(awk '/requests in/{print $1}' <<<"$out")
  p50=$(awk '$1=="50%"{print $2}' <<<"$out")
  p99=$(awk '$1=="99%"{print $2}' <<<"$out")
  echo "$name,keepalive,$rps,$p50,$p99,$(( (after - before) / (n > 0 ? n : 1) ))" >> "$csv"
  before=$(cpu_ns "$pat")
  out=$(timeout 120 ab -q -n "$N" -c "$C" -s 10 "http://127.0.0.1:$port/" 2>&1 || true)
  after=$(cpu_ns "$pat")
  rps=$(awk '/^Requests per second:/{print $4}' <<<"$out")
  echo "$name,newconn,${rps:-0},,,$(( (after - before) / N ))" >> "$csv"
  before=$(cpu_ns "$pat")
  out=$(timeout 120 ab -q -n "$N" -c "$C" -s 10 "https://127.0.0.1:$tport/" 2>&1 || true)
  after=$(cpu_ns "$pat")
  rps=$(awk '/^Requests per second:/{print $4}' <<<"$out")
  echo "$name,tls_handshake,${rps:-0},,,$(( (after - before) / N ))" >> "$csv"
  tail -3 "$csv" | sed 's/^/  /'
}
echo "$(nproc) cores, wrk -c $C -d $D, ab -n $N -c $C"
run ballast "ballast proxy -f $W/ballast.cfg" 19201 19202
run haproxy "haproxy -db -f $W/haproxy.cfg" 19301 19302
run nginx "nginx -c $W/nginx.conf" 19401 19402

python3 - "$csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
get = lambda p, m: next(r for r in rows if r["proxy"] == p and r["metric"] == m)
print("\nratio to HAProxy (higher is better for req/s, lower for CPU and latency):")
for m in ["keepalive", "newconn", "tls_handshake"]:
    h = get("haproxy", m)
    for p in ["ballast", "haproxy", "nginx"]:
        r = get(p, m)
        lat = f"  p50 {r['p50_ms']} p99 {r['p99_ms']}" if r["p50_ms"] else ""
        ratio = float(r["value"]) / float(h["value"]) if float(h["value"]) else 0
        cpu = int(r["cpu_ns_per_req"]) / max(int(h["cpu_ns_per_req"]), 1)
        print(f"  {m:14s} {p:8s} {float(r['value']):10.0f}/s  {ratio:5.2f}x   CPU/req {int(r['cpu_ns_per_req']):8d} ns ({cpu:4.2f}x){lat}")
PY
echo "csv: $csv"
