#!/usr/bin/env bash
# ns per packet of the XDP program (the kernel's own timer in BPF_PROG_TEST_RUN) for a
# non-VIP packet, a VIP packet hitting the connection table (tunnel and NAT), and a new
# flow (Maglev lookup + table insert); and the Maglev build time for 65537 slots x 100
# backends. Not a test. usage: sudo bench/xdp.sh [runs per case, default 100000]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out
out="bench/out/xdp-$(date +%Y%m%d-%H%M%S).csv"
cargo run -q --release -p ballast-l4 --example xdp_bench -- "${1:-100000}" | tee "$out"
echo "csv: $out"
