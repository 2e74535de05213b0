#!/usr/bin/env bash
# README command 2: install what is missing, build, and run every test. Idempotent.
# Tests that need root, BPF or namespaces run here (as root); under CI=true they fail
# rather than skip when they cannot run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/install.sh
cargo build --all-targets
cargo test --no-fail-fast
