#!/usr/bin/env bash
# Boots the appliance image under qemu (TCG) and waits until its agent reports healthy:
# a one-node server whose API, reached through user-mode networking forwarded to
# 127.0.0.1:$PORT, names a Raft leader at /v1/status/leader.
#
#   images/boot-test.sh            (as root; after images/build.sh)
#
# BOOT=disk (default): BIOS -> GRUB on the image, settings from a config disk (vfat,
#   label BALLASTCFG). BOOT=kernel: qemu -kernel/-initrd, settings on the kernel command
#   line (ballast.*), the journal forwarded to the console.
# Env: PORT (18500), TIMEOUT (180 s), IMAGE, QEMU_MEM, KEEP_TMP=1.
set -euo pipefail
TEST_NAME=boot-test
. "$(dirname "${BASH_SOURCE[0]}")/test-lib.sh"

PORT=${PORT:-18500}
TIMEOUT=${TIMEOUT:-180}
BOOT=${BOOT:-disk}

vm_prereqs
trap vm_cleanup EXIT
if curl -s -m 1 -o /dev/null "http://127.0.0.1:$PORT/" 2>/dev/null; then
    fail "127.0.0.1:$PORT is already in use (PORT=...)"
fi

KEY=$(gossip_key)
# User-mode networking: the guest is 10.0.2.15/24, the gateway 10.0.2.2.
SETTINGS="node=boot1
role=device
addr=eth0:10.0.2.15/24
gw=10.0.2.2
encrypt=$KEY"
NET=(-netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$PORT-:8500" -device virtio-net-pci,netdev=n0)

case $BOOT in
    disk)
        echo "$SETTINGS" | vm_cfgdisk boot1
        vm_start boot1 2 disk "${NET[@]}"
        ;;
    kernel)
        args="systemd.journald.forward_to_console=1 $(echo "$SETTINGS" | sed 's/^/ballast./' | tr '\n' ' ')"
        vm_start boot1 2 "kernel:$args" "${NET[@]}"
        ;;
    *) fail "BOOT: disk or kernel" ;;
esac

leader() {
    local l
    l=$(curl -s -m 2 "http://127.0.0.1:$PORT/v1/status/leader" 2>/dev/null) || return 1
    [ -n "$l" ] && [ "$l" != '""' ] || return 1
    LEADER=$l
}
LEADER=""
wait_until "$TIMEOUT" "a leader at http://127.0.0.1:$PORT/v1/status/leader" leader
HEALTHY=$(elapsed)
log "healthy after ${HEALTHY}s: leader $LEADER"
log "peers: $(curl -s -m 2 "http://127.0.0.1:$PORT/v1/status/peers")"
# The first-boot settings reached the agent: its node name.
self=$(curl -s -m 2 "http://127.0.0.1:$PORT/v1/agent/self" || true)
echo "$self" | grep -q '"boot1"' || fail "agent/self does not name node boot1: ${self:0:300}"
log "agent/self names node boot1"
grep -q 'ballast-config: from config disk\|ballast-config: from kernel command line' <(tr -d '\r' <"$TMP/boot1.console") ||
    fail "the console shows no ballast-config summary"
log "PASS: boot ($BOOT) to healthy agent in ${HEALTHY}s (TCG)"
echo "1 passed, 0 failed"
