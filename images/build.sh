#!/usr/bin/env bash
# Builds the ballast VM appliance: images/out/ballast.qcow2 (self-booting, GRUB on BIOS),
# plus images/out/vmlinuz and images/out/initrd.img for qemu -kernel/-initrd boots.
#
#   sudo images/build.sh [PATH/TO/ballast]      (or BALLAST_BIN=...; default target/release/ballast)
#
# Run as root. No loop or nbd devices: the root filesystem is made with `mkfs.ext4 -d` straight
# into a partition of a raw disk file (-E offset), GRUB's boot.img and core.img are written to
# the MBR and the gap after it with dd, and `qemu-img convert -c` makes the qcow2.
#
# Idempotent: the debootstrap'd base system is cached in images/out/cache/ (keyed by its
# package list and setup), as are the downloaded .debs; a rerun only lays the ballast binary
# and appliance files on a copy of it. If nothing changed, the image is left as it is
# (FORCE=1 rebuilds). Environment: MIRROR, DISK_MB (default 1024), FORCE, BASE_ONLY=1
# (build just the cached base), KEEP_WORK=1 (keep images/out/work).
set -euo pipefail

IMAGES=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$IMAGES")
OUT=$IMAGES/out
CACHE=$OUT/cache
WORK=$OUT/work
SUITE=bookworm
# The Debian archive the machine's apt uses (its URI read from apt), unless MIRROR says.
MIRROR=${MIRROR:-$(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 2>/dev/null |
    awk '$2 == "bookworm" && $3 == "main" {print $1; exit}')}
[ -n "$MIRROR" ] || { echo "build: no bookworm main source in apt's configuration; set MIRROR" >&2; exit 1; }
DISK_MB=${DISK_MB:-1024}
BALLAST_BIN=${1:-${BALLAST_BIN:-$REPO/target/release/ballast}}
ROOT_LABEL=ballast-root
# Kernel command line of both boots (GRUB's menu entry; boot tests' -append).
CMDLINE_BASE="root=LABEL=$ROOT_LABEL ro console=tty0 console=ttyS0,115200n8 net.ifnames=0"
PKGS=(
    systemd systemd-sysv udev dbus
    linux-image-cloud-amd64 initramfs-tools zstd
    iproute2 kmod e2fsprogs procps iputils-ping netbase less
)

T0=$(date +%s)
step() { printf '[build %s +%3ss] %s\n' "$(date +%H:%M:%S)" $(($(date +%s) - T0)) "$*"; }
die() { printf '[build] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"
mkdir -p "$OUT" "$CACHE/debs"

step "host tools"
bash "$IMAGES/install-deps.sh"
for t in debootstrap mkfs.ext4 sfdisk grub-mkimage qemu-img; do
    command -v "$t" >/dev/null || die "$t missing (images/install-deps.sh)"
done

if [ "${BASE_ONLY:-0}" != 1 ]; then
    [ -x "$BALLAST_BIN" ] || die "no ballast binary at $BALLAST_BIN (build it: cargo build --release -p ballast; or pass its path)"
    BALLAST_BIN=$(readlink -f "$BALLAST_BIN")
    # It must run on bookworm's glibc (2.36) and need nothing else.
    libs=$(ldd "$BALLAST_BIN" 2>&1 | awk '/=>/ {print $1}' | grep -vE '^(libc|libm|libgcc_s|libpthread|libdl|librt|ld-linux-x86-64)\.so' || true)
    [ -z "$libs" ] || die "$BALLAST_BIN needs libraries the image lacks: $libs"
fi

# --- the base system (cached) -----------------------------------------------------------

# Everything done to the debootstrap'd tree that does not depend on ballast. Its text is part
# of the cache key, so editing it rebuilds the base.
customize_base() {
    local r=$1
    # Mounts for chroot work; undone by the trap below.
    mount -t proc proc "$r/proc"
    mount -t sysfs sysfs "$r/sys"
    mount --bind /dev "$r/dev"

    echo ballast >"$r/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\tballast\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$r/etc/hosts"
    rm -f "$r/etc/resolv.conf"
    echo "# Set by ballast-config (dns=) or by hand." >"$r/etc/resolv.conf"
    printf 'LABEL=%s\t/\text4\terrors=remount-ro\t0\t1\n' "$ROOT_LABEL" >"$r/etc/fstab"

    # A lab appliance: root logs in on the console without a password (there is no sshd).
    chroot "$r" passwd -d root >/dev/null
    chroot "$r" useradd --system --user-group --no-create-home --home-dir /var/lib/ballast \
        --shell /usr/sbin/nologin ballast
    # Each VM made from the image gets its own machine id at first boot.
    : >"$r/etc/machine-id"
    rm -f "$r/var/lib/dbus/machine-id"

    chroot "$r" systemctl enable systemd-networkd.service >/dev/null 2>&1
    # Nothing to fetch from: no apt timers; no periodic fs scrubs.
    chroot "$r" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
        e2scrub_reap.service >/dev/null 2>&1 || true

    # Journal kept on disk, bounded.
    mkdir -p "$r/var/log/journal" "$r/etc/systemd/journald.conf.d"
    printf '[Journal]\nStorage=persistent\nSystemMaxUse=64M\n' >"$r/etc/systemd/journald.conf.d/ballast.conf"

    # Smaller: no docs, man pages or translations (also for packages installed later).
    cat >"$r/etc/dpkg/dpkg.cfg.d/01-ballast-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
    find "$r/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$r/usr/share/man"/* "$r/usr/share/info"/* "$r/usr/share/lintian"
    find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
    chroot "$r" apt-get clean
    rm -rf "$r/var/lib/apt/lists"/* "$r/var/cache/apt"/*.bin "$r/var/cache/debconf"/*-old \
        "$r/var/log"/*.log "$r/var/log/apt"/* "$r/tmp"/* "$r/initrd.img.old" "$r/vmlinuz.old"

    umount "$r/dev" "$r/sys" "$r/proc"
}

BASE_KEY=$( { echo "$SUITE $MIRROR ${PKGS[*]} $ROOT_LABEL"; declare -f customize_base; } | sha256sum | cut -c1-16)
BASE=$CACHE/base-$BASE_KEY

cleanup_mounts() {
    local d
    for d in "$WORK/base.tmp" "$WORK/root"; do
        for m in dev sys proc; do mountpoint -q "$d/$m" 2>/dev/null && umount -l "$d/$m" || true; done
    done
}
trap cleanup_mounts EXIT

if [ -d "$BASE" ]; then
    step "base system: cached ($BASE)"
else
    step "base system: debootstrap $SUITE minbase (debs cached in $CACHE/debs)"
    rm -rf "$WORK/base.tmp"
    mkdir -p "$WORK"
    pkgs=$(IFS=,; echo "${PKGS[*]}")
    if ! debootstrap --variant=minbase --cache-dir="$CACHE/debs" --include="$pkgs" \
        "$SUITE" "$WORK/base.tmp" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
        tail -30 "$WORK/debootstrap.log" >&2
        die "debootstrap failed (log: $WORK/debootstrap.log)"
    fi
    step "base system: setting up"
    customize_base "$WORK/base.tmp"
    # Older bases are no longer used.
    rm -rf "$CACHE"/base-*
    mv "$WORK/base.tmp" "$BASE"
    step "base system: $(du -sh "$BASE" | cut -f1) cached as $BASE"
fi
[ "${BASE_ONLY:-0}" = 1 ] && { step "BASE_ONLY: done"; exit 0; }

# --- the image ----------------------------------------------------------------------------

# Everything that goes into the image; unchanged inputs leave the image as it is.
STAMP=$( {
    echo "$BASE_KEY $DISK_MB $CMDLINE_BASE"
    sha256sum "$BALLAST_BIN" "$IMAGES/build.sh" "$IMAGES/README.md"
    (cd "$IMAGES/rootfs" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
} | sha256sum | cut -c1-16)
if [ "${FORCE:-0}" != 1 ] && [ -f "$OUT/ballast.qcow2" ] && [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$STAMP" ]; then
    step "image up to date: $OUT/ballast.qcow2 (FORCE=1 rebuilds)"
    exit 0
fi

step "root tree: copying the base"
rm -rf "$WORK/root"
mkdir -p "$WORK"
cp -a "$BASE" "$WORK/root"
R=$WORK/root

step "root tree: ballast $(timeout 5 "$BALLAST_BIN" --version 2>/dev/null | head -1 || true), units, first-boot config"
install -D -m 0755 "$BALLAST_BIN" "$R/usr/local/bin/ballast"
cp -a --no-preserve=ownership "$IMAGES/rootfs/." "$R/"
chmod 0755 "$R/usr/local/sbin/ballast-config"
install -D -m 0644 "$IMAGES/README.md" "$R/usr/local/share/doc/ballast/README.md"
mkdir -p "$R/etc/ballast/agent.d"
chroot "$R" chgrp -R ballast /etc/ballast
chmod 0750 "$R/etc/ballast"
chroot "$R" systemctl enable ballast-config.service ballast.service ballast-register.service >/dev/null 2>&1
cat >"$R/etc/issue" <<'EOF'
ballast load-balancer appliance (\n, \l)
Log in as root (no password). Settings: ballast-config show; agent: journalctl -u ballast

EOF
# GRUB reads this; the kernel and initrd are the /vmlinuz and /initrd.img links.
mkdir -p "$R/boot/grub"
cat >"$R/boot/grub/grub.cfg" <<EOF
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=1
set default=0
menuentry 'ballast appliance' {
    linux /vmlinuz $CMDLINE_BASE
    initrd /initrd.img
}
EOF
KERNEL=$(readlink -f "$R/vmlinuz"); INITRD=$(readlink -f "$R/initrd.img")
[ -f "$KERNEL" ] && [ -f "$INITRD" ] || die "no kernel/initrd in the root tree"

step "disk: ${DISK_MB} MiB raw, MBR + ext4 root (mkfs.ext4 -d, no loop device)"
RAW=$WORK/disk.raw
rm -f "$RAW"
truncate -s "${DISK_MB}M" "$RAW"
echo 'label: dos
start=2048, type=83, bootable' | sfdisk --quiet "$RAW"
mkfs.ext4 -q -F -L "$ROOT_LABEL" -E offset=$((2048 * 512)) -d "$R" "$RAW" $((DISK_MB - 1))M

step "disk: GRUB (i386-pc boot.img in the MBR, core.img after it)"
GRUBDIR=/usr/lib/grub/i386-pc
cat >"$WORK/early.cfg" <<EOF
search --no-floppy --label $ROOT_LABEL --set=root
set prefix=(\$root)/boot/grub
EOF
# Every module the menu needs is built in: the root fs carries no GRUB modules.
grub-mkimage -O i386-pc -o "$WORK/core.img" -c "$WORK/early.cfg" -p /boot/grub \
    biosdisk part_msdos ext2 search search_label normal linux echo serial terminal test configfile
core_sectors=$((($(stat -c %s "$WORK/core.img") + 511) / 512))
[ "$core_sectors" -lt 2047 ] || die "core.img does not fit before the partition"
# boot.img's code only (440 bytes): the partition table stays. It loads sector 1, where
# core.img's first sector (diskboot) loads the rest from sector 2 on.
dd if="$GRUBDIR/boot.img" of="$RAW" bs=440 count=1 conv=notrunc status=none
dd if="$WORK/core.img" of="$RAW" bs=512 seek=1 conv=notrunc status=none

step "qcow2: qemu-img convert -c"
qemu-img convert -f raw -O qcow2 -c "$RAW" "$OUT/ballast.qcow2.tmp"
mv "$OUT/ballast.qcow2.tmp" "$OUT/ballast.qcow2"
cp "$KERNEL" "$OUT/vmlinuz"
cp "$INITRD" "$OUT/initrd.img"
echo "$CMDLINE_BASE" >"$OUT/cmdline"

used_kb=$(du -sk "$R" | cut -f1)
raw_used_kb=$(du -k "$RAW" | cut -f1)
qcow_bytes=$(stat -c %s "$OUT/ballast.qcow2")
md5=$(md5sum "$OUT/ballast.qcow2" | cut -d' ' -f1)
{
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "kernel=$(basename "$KERNEL" | sed 's/^vmlinuz-//')"
    echo "root_tree_kib=$used_kb"
    echo "raw_virtual_bytes=$((DISK_MB * 1024 * 1024))"
    echo "raw_allocated_kib=$raw_used_kb"
    echo "qcow2_bytes=$qcow_bytes"
    echo "qcow2_md5=$md5"
    echo "cmdline=$CMDLINE_BASE"
} >"$OUT/build-info"
[ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK"
echo "build_seconds=$(($(date +%s) - T0))" >>"$OUT/build-info"
echo "$STAMP" >"$OUT/.stamp"
step "done: $OUT/ballast.qcow2 $((qcow_bytes / 1024 / 1024)) MiB (md5 $md5); root tree $((used_kb / 1024)) MiB on a ${DISK_MB} MiB disk; kernel+initrd in $OUT"
