#!/usr/bin/env bash
# Installs what building and testing ballast needs, if missing. Idempotent; run as root.
#   - Debian packages: LLVM 22 (for bpf-linker), iproute2, ethtool, the peers and load
#     tools the bench compares against (haproxy, nginx with stream, ab, wrk), curl.
#   - rust-src for the nightly toolchain (the eBPF crate builds core for bpfel).
#   - bpf-linker 0.13.0 built against LLVM 22 (rustc nightly's LLVM major is 22).
#   - bpffs mounted at /sys/fs/bpf.
#   - py-consul (PyPI): a real Consul client the control-plane tests drive unchanged.
set -euo pipefail
export PATH="$HOME/.cargo/bin:$PATH"

need_pkgs=()
for p in llvm-22-dev iproute2 ethtool curl bind9-dnsutils prometheus openssl chromium nghttp2-client haproxy keepalived nginx-light libnginx-mod-stream apache2-utils wrk build-essential pkg-config; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if ((${#need_pkgs[@]})); then
  echo "install: apt packages: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

command -v rustup >/dev/null || { echo "install: rustup is missing (the machine image provides stable + nightly)" >&2; exit 1; }
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
  echo "install: rust-src for nightly"
  rustup component add rust-src --toolchain nightly
fi

if ! bpf-linker --version 2>/dev/null | grep -q '0.13.0'; then
  echo "install: bpf-linker 0.13.0 (LLVM 22), about a minute"
  LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker --version 0.13.0 --locked \
    --no-default-features --features llvm-22
fi

mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

if ! python3 -c 'import consul' 2>/dev/null; then
  echo "install: py-consul"
  command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends python3 python3-pip >/dev/null
  }
  # Debian's python refuses system-wide pip installs unless told (PEP 668).
  python3 -m pip install -q py-consul 2>/dev/null || python3 -m pip install -q --break-system-packages py-consul
fi
# playwright-core drives Debian's chromium in the web page's tests (no browser download).
if [ ! -d /opt/ballast-node/node_modules/playwright-core ]; then
  echo "install: playwright-core (npm)"
  command -v npm >/dev/null || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends nodejs npm >/dev/null
  }
  mkdir -p /opt/ballast-node
  (cd /opt/ballast-node && { [ -f package.json ] || echo '{"name":"ballast-ui-test","private":true}' > package.json; } \
    && npm install --no-audit --no-fund --silent playwright-core@1.64.1)
fi
echo "install: ok"
