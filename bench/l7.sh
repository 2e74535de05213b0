#!/usr/bin/env bash
# L7 side by side (not a test): ballast proxy vs HAProxy 2.6 vs nginx 1.22, same machine,
# same run, same backends (3 nginx, 1 worker each), all on loopback, equivalent configs:
# round robin, keep-alive and connection reuse to the backends for every request
# (`http-reuse always` for ballast and HAProxy, whose default `safe` opens a new server
# connection for each client connection's first request; nginx `keepalive 128`), TLS 1.3
# with one ECDSA P-256 certificate. Figures, each a bounded run:
#   keepalive  wrk -c C -d D (HTTP/1.1 keep-alive): req/s, p50, p90 and p99 latency
#   newconn    ab -n N -c C (a new connection per request): req/s
#   tls        ab -n N -c C over https (a full TLS handshake per request): handshakes/s
#   h2         h2load -c C -m 10 -D D over https, ALPN h2 (HTTP/2 keep-alive, 10 streams
#              per connection): req/s (an orientation figure: HAProxy led nginx here)
# plus each proxy's CPU time per request (user + system of its processes).
# R rounds (default 3), the three proxies interleaved in a rotating order each round,
# the two not measured stopped (SIGSTOP) meanwhile; medians are reported, since a shared
# VM's steal time moves single runs by ±20%.
# Prints ratios to HAProxy; saves bench/out/l7-<time>.csv (every round).
#
# usage: sudo bench/l7.sh      (N=10000 C=32 D=5s R=3 METRICS="keepalive newconn tls_handshake h2")
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
C=${C:-32}
D=${D:-5s}
R=${R:-3}
METRICS=${METRICS:-keepalive newconn tls_handshake h2}
B=${BALLAST:-target/release/ballast}
OUT=bench/out
mkdir -p "$OUT"
csv="$OUT/l7-$(date +%Y%m%d-%H%M%S).csv"
W=$(mktemp -d /tmp/ballast-l7.XXXXXX)
ulimit -n "$(ulimit -Hn)" || true
pids=()
tw_max=$(sysctl -n net.ipv4.tcp_max_tw_buckets)
cleanup() {
  sysctl -qw net.ipv4.tcp_max_tw_buckets="$tw_max" || true
  # A stopped process keeps a SIGTERM pending: continue everything first.
  for p in "${pids[@]}"; do pkill -CONT -P "$p" 2>/dev/null || true; kill -CONT "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
# Each new-connection run leaves N sockets in TIME_WAIT on the proxy's side; at ~28k (the
# ephemeral port range) every new SYN hits one and new-connection rates halved for
# whichever proxy came next. Capped for the run (the kernel just skips TIME_WAIT beyond
# the cap), restored on exit.
sysctl -qw net.ipv4.tcp_max_tw_buckets=4096
[ -x "$B" ] || cargo build --release --bin ballast
command -v wrk >/dev/null && command -v ab >/dev/null || bash scripts/install.sh

# Ports must be free: ballast binds with SO_REUSEPORT, so a leftover one on the same
# port would silently take half the connections (and its CPU time would not be counted).
for port in 19101 19102 19103 19201 19202 19203 19301 19302 19303 19401 19402 19403; do
  if ss -Hltn "sport = :$port" | grep -q .; then echo "port $port is in use: stop what listens there first"; exit 1; fi
done

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
    http-reuse always
listen web
    bind 127.0.0.1:19201
    bind 127.0.0.1:19202 ssl crt $W/both.pem alpn http/1.1
    bind 127.0.0.1:19203 ssl crt $W/both.pem alpn h2,http/1.1
    balance roundrobin
    server b1 127.0.0.1:19101
    server b2 127.0.0.1:19102
    server b3 127.0.0.1:19103
EOF
sed -e 's/19201/19301/; s/19202/19302/; s/19203/19303/' "$W/ballast.cfg" | sed '1i global\n    maxconn 9000\n    ssl-default-bind-options ssl-min-ver TLSv1.3' > "$W/haproxy.cfg"

cat > "$W/nginx.conf" <<EOF
worker_processes auto; daemon off; pid $W/nginx.pid; error_log $W/nginx.err warn;
events { worker_connections 16384; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $W; proxy_temp_path $W; fastcgi_temp_path $W; uwsgi_temp_path $W; scgi_temp_path $W;
  upstream be { server 127.0.0.1:19101; server 127.0.0.1:19102; server 127.0.0.1:19103; keepalive 128; }
  server { listen 127.0.0.1:19401 backlog=8192; listen 127.0.0.1:19402 ssl backlog=8192; listen 127.0.0.1:19403 ssl http2 backlog=8192;
    ssl_certificate $W/crt.pem; ssl_certificate_key $W/key.pem; ssl_protocols TLSv1.3;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF

"$B" proxy -f "$W/ballast.cfg" >"$W/ballast.log" 2>&1 & pids+=($!)
haproxy -db -f "$W/haproxy.cfg" >"$W/haproxy.log" 2>&1 & pids+=($!)
nginx -c "$W/nginx.conf" & pids+=($!)
sleep 1
# A proxy that could not start (a port taken by something else) must not be measured.
for p in "${pids[@]}"; do
  kill -0 "$p" 2>/dev/null || { echo "a proxy or backend did not start:"; tail -5 "$W"/*.log "$W"/*.err 2>/dev/null; exit 1; }
done

cpu_ns() { # processes matching $1 and their children
  local total=0 hz pids
  hz=$(getconf CLK_TCK)
  pids=$(pgrep -f "$1" || true)
  for p in $pids; do pids="$pids $(pgrep -P "$p" || true)"; done
  for pid in $pids; do total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0))); done
  echo $((total * 1000000000 / hz))
}

echo "round,proxy,metric,value,p50,p90,p99,cpu_ns_per_req" > "$csv"
run() { # name pattern plain_port tls_port h2_port
  local name=$1 pat=$2 port=$3 tport=$4 h2port=$5 before after out rps p50 p90 p99 n failed
  if [[ " $METRICS " == *" keepalive "* ]]; then
  before=$(cpu_ns "$pat")
  out=$(wrk -t 2 -c "$C" -d "$D" --latency "http://127.0.0.1:$port/" 2>&1)
  after=$(cpu_ns "$pat")
  rps=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
  n=$(awk '/requests in/{print $1}' <<<"$out")
  p50=$(awk '$1=="50%"{print $2}' <<<"$out")
  p90=$(awk '$1=="90%"{print $2}' <<<"$out")
  p99=$(awk '$1=="99%"{print $2}' <<<"$out")
  echo "$round,$name,keepalive,$rps,$p50,$p90,$p99,$(( (after - before) / (n > 0 ? n : 1) ))" >> "$csv"
  fi
  if [[ " $METRICS " == *" newconn "* ]]; then
  before=$(cpu_ns "$pat")
  out=$(timeout 120 ab -q -n "$N" -c "$C" -s 10 "http://127.0.0.1:$port/" 2>&1 || true)
  after=$(cpu_ns "$pat")
  rps=$(awk '/^Requests per second:/{print $4}' <<<"$out")
  echo "$round,$name,newconn,${rps:-0},,,,$(( (after - before) / N ))" >> "$csv"
  fi
  if [[ " $METRICS " == *" tls_handshake "* ]]; then
  before=$(cpu_ns "$pat")
  out=$(timeout 120 ab -q -n "$N" -c "$C" -s 10 "https://127.0.0.1:$tport/" 2>&1 || true)
  after=$(cpu_ns "$pat")
  rps=$(awk '/^Requests per second:/{print $4}' <<<"$out")
  echo "$round,$name,tls_handshake,${rps:-0},,,,$(( (after - before) / N ))" >> "$csv"
  fi
  if [[ " $METRICS " == *" h2 "* ]]; then
  before=$(cpu_ns "$pat")
  out=$(timeout 120 h2load -c "$C" -m 10 -D "${D%s}" "https://127.0.0.1:$h2port/" 2>&1 || true)
  after=$(cpu_ns "$pat")
  rps=$(awk '/^finished in/{print $4}' <<<"$out")
  n=$(awk '/^requests:/{print $8}' <<<"$out")
  failed=$(awk '/^requests:/{print $10}' <<<"$out")
  [ "${failed:-1}" = 0 ] || echo "  $name h2: ${failed:-?} failed requests"
  echo "$round,$name,h2,${rps:-0},,,,$(( (after - before) / (${n:-0} > 0 ? n : 1) ))" >> "$csv"
  fi
  tail -n "$(wc -w <<<"$METRICS")" "$csv" | sed 's/^/  /'
}
steal() { awk '/^cpu /{print $9}' /proc/stat; }
signal_others() { # pattern-of-the-measured-proxy SIGNAL
  local p q
  for p in "ballast proxy -f $W/ballast.cfg" "haproxy -db -f $W/haproxy.cfg" "nginx -c $W/nginx.conf"; do
    [ "$p" = "$1" ] && continue
    for q in $(pgrep -f "$p" || true); do
      kill -"$2" "$q" 2>/dev/null || true
      pkill -"$2" -P "$q" 2>/dev/null || true
    done
  done
}
echo "$(nproc) cores, wrk -c $C -d $D, ab -n $N -c $C, $R rounds"
ticks0=$(awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat); steal0=$(steal)
for round in $(seq 1 "$R"); do
  order=("ballast|ballast proxy -f $W/ballast.cfg|19201|19202|19203" "haproxy|haproxy -db -f $W/haproxy.cfg|19301|19302|19303" "nginx|nginx -c $W/nginx.conf|19401|19402|19403")
  for k in 0 1 2; do
    IFS='|' read -r name pat port tport h2port <<<"${order[$(( (k + round) % 3 ))]}"
    # Only the proxy measured runs: the others are stopped (SIGSTOP), so their timers,
    # health checks and idle threads take nothing from it; a second's pause lets the
    # previous run's connections wind down.
    signal_others "$pat" STOP
    sleep 1
    run "$name" "$pat" "$port" "$tport" "$h2port"
    signal_others "$pat" CONT
  done
done
ticks1=$(awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat); steal1=$(steal)
echo "CPU steal during the run (time the hypervisor gave to others): $(( 100 * (steal1 - steal0) / (ticks1 - ticks0 + 1) ))%"

python3 - "$csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))

def ms(v):  # wrk prints 850.00us, 1.33ms, 1.02s
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
    return float("nan")

def med(p, m, key, conv=float):
    vals = [conv(r[key]) for r in rows if r["proxy"] == p and r["metric"] == m and r[key]]
    return statistics.median(vals) if vals else 0.0

print("\nmedians of the rounds; ratio to HAProxy (req/s: higher is better; CPU, latency: lower):")
for m in [m for m in ["keepalive", "newconn", "tls_handshake", "h2"] if any(r["metric"] == m for r in rows)]:
    h, hc = med("haproxy", m, "value"), med("haproxy", m, "cpu_ns_per_req")
    for p in ["ballast", "haproxy", "nginx"]:
        v, c = med(p, m, "value"), med(p, m, "cpu_ns_per_req")
        lat = f"  p50 {med(p, m, 'p50', ms):.2f} p90 {med(p, m, 'p90', ms):.2f} p99 {med(p, m, 'p99', ms):.2f} ms" if m == "keepalive" else ""
        print(f"  {m:14s} {p:8s} {v:10.0f}/s  {v / h if h else 0:5.2f}x   CPU/req {c / 1000:7.1f} us ({c / hc if hc else 0:4.2f}x){lat}")
PY
echo "csv: $csv"
