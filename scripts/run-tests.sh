#!/usr/bin/env bash
# README command 2: install what is missing, build, and run every test. Idempotent.
# Tests that need root, BPF or namespaces run here (as root); under CI=true they fail
# rather than skip when they cannot run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/install.sh
# The crate graph is one way (fails on a wrong dependency edge).
python3 scripts/check_deps.py
cargo build --all-targets
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --no-fail-fast 2>&1 | tee "$log" || status=$?
# The VM appliance (issue 17): the image built from the release binary, one VM booted to a
# healthy agent under TCG (GRUB and a config disk), three VMs (two LB devices and a
# witness) forming one cluster on a shared L2 in a namespace.
{ cargo build --release --bin ballast && bash images/build.sh && bash images/boot-test.sh \
    && bash images/cluster-test.sh; } || status=$?
# GNS3 (issue 17): the appliance and the seed 004 project validated by gns3-server's own
# models, the project opened by a real gns3-server, the agent demo on the topology the
# runner builds from the project, and its hybrid tier (LB01 and LB02 as appliance VMs on taps
# in the runner's bridges, LB01's VM killed).
{ bash gns3/install-deps.sh && python3 gns3/validate.py && bash gns3/load-test.sh \
    && BALLAST=target/debug/ballast bash gns3/scenario.sh g3ci && bash gns3/hybrid-test.sh hybci; } || status=$?
# The parsers' fuzz targets, a short bounded run each (a crash fails the run).
bash scripts/fuzz.sh 20 || status=$?
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
