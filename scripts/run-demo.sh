#!/usr/bin/env bash
# README command 1: install what is missing, build, and run the demo (seed 004's cluster). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/install.sh
cargo build --release --bin ballast
bash scripts/demo.sh
