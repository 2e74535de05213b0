#!/usr/bin/env bash
# Runs each cargo-fuzz target of userspace/fuzz for a bounded time (default 20 s each),
# starting from the seed configurations. Installs cargo-fuzz if missing. The targets
# build on the pure crates (ballast-l7, ballast-l4 without its loader, ballast-control):
# no eBPF build, no bpf-linker.
set -euo pipefail
cd "$(dirname "$0")/../userspace/fuzz"
export PATH="$HOME/.cargo/bin:$PATH"
secs=${1:-20}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p corpus/haproxy_cfg
cp ../l7/tests/fixtures/*.cfg corpus/haproxy_cfg/
# HTTP/2 client byte streams that get past the preface and HPACK (random bytes seldom do).
mkdir -p corpus/h2
cp seeds/h2/* corpus/h2/
# Consul config files (the first byte picks the parser: 1 JSON, 6 HCL).
mkdir -p corpus/control_input
for f in ../../control/testdata/consul/*; do
  case $f in *.hcl) sel='\x06' ;; *) sel='\x01' ;; esac
  { printf "$sel"; cat "$f"; } >"corpus/control_input/$(basename "$f")"
done
# DNS queries as dig sends them.
mkdir -p corpus/dns
cp seeds/dns/* corpus/dns/
for t in haproxy_cfg l4_config proxy_protocol control_input http1 h2 dns; do
  echo "fuzz: $t for ${secs}s"
  cargo +nightly fuzz run --fuzz-dir . "$t" -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1 | tail -4
done
