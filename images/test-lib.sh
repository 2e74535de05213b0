# Shared by boot-test.sh and cluster-test.sh (sourced, not run).
# Every VM runs from a throwaway qcow2 overlay on images/out/ballast.qcow2, so the image
# itself stays as built; every qemu started here is killed by vm_cleanup (an EXIT trap).

IMAGES=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$IMAGES/out
IMAGE=${IMAGE:-$OUT/ballast.qcow2}
QEMU_MEM=${QEMU_MEM:-512}
QEMU_CPU=${QEMU_CPU:-qemu64}
T0=$(date +%s.%N)
VM_PIDS=()
TMP=""

elapsed() { awk -v a="$(date +%s.%N)" -v b="$T0" 'BEGIN { printf "%.1f", a - b }'; }
log() { printf '[%s %6ss] %s\n' "${TEST_NAME:-test}" "$(elapsed)" "$*"; }
fail() { log "FAIL: $*"; exit 1; }

vm_prereqs() {
    [ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
    for t in qemu-system-x86_64 qemu-img curl mkfs.vfat mcopy; do
        command -v "$t" >/dev/null || {
            echo "$t missing: run images/install-deps.sh" >&2
            exit 1
        }
    done
    [ -f "$IMAGE" ] || { echo "no image at $IMAGE: run images/build.sh" >&2; exit 1; }
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/ballast-${TEST_NAME:-test}.XXXXXX")
}

# vm_cleanup: kills the VMs this script started (by pid), shows the tail of their consoles
# on failure, removes the temp dir. Extra cleanup: define vm_cleanup_extra (gets the exit code).
vm_cleanup() {
    local rc=$? pid i
    set +e # cleanup goes on whatever fails in it
    trap - INT TERM
    if [ $rc != 0 ] && [ -n "${HOLD_ON_FAIL:-}" ]; then
        echo "HOLD_ON_FAIL: VMs kept for ${HOLD_ON_FAIL}s (temp dir $TMP)"
        sleep "$HOLD_ON_FAIL"
    fi
    rc=${rc:-1}
    for pid in "${VM_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for i in $(seq 1 50); do
        local alive=0
        for pid in "${VM_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for pid in "${VM_PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    if [ $rc != 0 ] && [ -n "$TMP" ]; then
        for f in "$TMP"/*.console; do
            [ -f "$f" ] || continue
            echo "----- last lines of $(basename "$f") -----"
            tr -d '\r' <"$f" | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g' | grep -v '^\s*$' | tail -${CONSOLE_TAIL:-40}
        done
    fi
    if declare -F vm_cleanup_extra >/dev/null; then vm_cleanup_extra "$rc"; fi
    if [ -n "$TMP" ]; then
        if [ "${KEEP_TMP:-0}" = 1 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
    fi
    exit $rc
}

# vm_cfgdisk NAME: makes $TMP/NAME.cfg.img from ballast.conf text on stdin.
vm_cfgdisk() {
    bash "$IMAGES/mkcfgdisk.sh" "$TMP/$1.cfg.img" - >/dev/null
}

# vm_start NAME SMP BOOT [qemu args...]: starts a VM in the background, console in
# $TMP/NAME.console. BOOT is "disk" (BIOS -> GRUB on the image) or "kernel:EXTRA ARGS"
# (qemu -kernel/-initrd from images/out with the image's command line plus EXTRA ARGS).
vm_start() {
    local name=$1 smp=$2 boot=$3
    shift 3
    qemu-img create -q -f qcow2 -F qcow2 -b "$IMAGE" "$TMP/$name.qcow2"
    local args=(-name "$name" -accel tcg -cpu "$QEMU_CPU" -m "$QEMU_MEM" -smp "$smp"
        -display none -monitor none -serial "file:$TMP/$name.console" -no-reboot
        -drive "file=$TMP/$name.qcow2,if=virtio,format=qcow2"
        -pidfile "$TMP/$name.pid")
    [ -f "$TMP/$name.cfg.img" ] && args+=(-drive "file=$TMP/$name.cfg.img,if=virtio,format=raw")
    case $boot in
        disk) ;;
        kernel:*)
            args+=(-kernel "$OUT/vmlinuz" -initrd "$OUT/initrd.img"
                -append "$(cat "$OUT/cmdline") ${boot#kernel:}")
            ;;
        *) fail "boot: disk or kernel:ARGS" ;;
    esac
    local wrap=()
    # In a network namespace (for taps there): ip netns exec execs qemu, so $! is qemu.
    [ -n "${VM_NETNS:-}" ] && wrap=(ip netns exec "$VM_NETNS")
    "${wrap[@]}" qemu-system-x86_64 "${args[@]}" "$@" </dev/null >"$TMP/$name.qemu.log" 2>&1 &
    VM_PIDS+=($!)
    log "started $name (pid $!, boot: ${boot%%:*})"
}

# vm_alive: fails if a VM has exited.
vm_alive() {
    local pid
    for pid in "${VM_PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || { cat "$TMP"/*.qemu.log >&2 || true; fail "qemu $pid exited"; }
    done
}

# wait_until TIMEOUT_S DESC CMD...: runs CMD every second until it succeeds.
wait_until() {
    local timeout=$1 desc=$2 deadline
    shift 2
    deadline=$(($(date +%s) + timeout))
    while ! "$@"; do
        vm_alive
        [ "$(date +%s)" -lt "$deadline" ] || fail "timed out after ${timeout}s waiting for $desc"
        sleep 1
    done
}

gossip_key() { head -c 32 /dev/urandom | base64; }
