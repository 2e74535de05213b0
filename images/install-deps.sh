#!/usr/bin/env bash
# Installs what images/build.sh, boot-test.sh and cluster-test.sh need on a Debian 12
# (bookworm) host, as root. Idempotent: installs only what is missing.
#
# qemu-system-x86 comes from bookworm-backports: the machines here carry qemu-utils 10.0
# from backports, which bookworm's own qemu-system-x86 (7.2) conflicts with.
set -euo pipefail

APT_OPTS=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
export DEBIAN_FRONTEND=noninteractive

log() { printf '[install-deps] %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { log "run as root"; exit 1; }

missing() {  # prints the packages (of those given) that are not installed
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || echo "$p"
    done
}

updated=0
apt_update() {
    [ "$updated" = 1 ] && return 0
    log "apt-get update"
    apt-get "${APT_OPTS[@]}" update -qq
    updated=1
}

# Host tools for the build: debootstrap; mkfs.ext4 -d (e2fsprogs); sfdisk (fdisk) for the
# partition table; grub-pc-bin for grub-mkimage and the i386-pc boot images; mtools and
# dosfstools to write a vfat config disk without mounting it; curl for the tests.
base=(debootstrap e2fsprogs fdisk grub-pc-bin mtools dosfstools curl zstd)
need=$(missing "${base[@]}")
if [ -n "$need" ]; then
    apt_update
    log "installing: $need"
    # shellcheck disable=SC2086
    apt-get "${APT_OPTS[@]}" install -y -qq --no-install-recommends $need
fi

# qemu-system-x86 (and qemu-utils, already there on these machines) from backports.
if ! command -v qemu-system-x86_64 >/dev/null || ! command -v qemu-img >/dev/null; then
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        log "adding bookworm-backports to apt sources"
        # The same Debian archive the machine's apt already uses (its URI read from apt).
        uri=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 2>/dev/null |
            awk '$2 == "bookworm" && $3 == "main" {print $1; exit}')
        [ -n "$uri" ] || { log "no bookworm main source in apt's configuration"; exit 1; }
        echo "deb $uri bookworm-backports main" > /etc/apt/sources.list.d/bookworm-backports.list
        updated=0
    fi
    apt_update
    log "installing qemu-system-x86 qemu-utils from bookworm-backports"
    apt-get "${APT_OPTS[@]}" install -y -qq --no-install-recommends \
        -t bookworm-backports qemu-system-x86 qemu-utils
fi
log "ok: $(qemu-system-x86_64 --version | head -1)"
