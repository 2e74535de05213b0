#!/usr/bin/env bash
# Makes a ballast appliance config disk: a small vfat image labelled BALLASTCFG holding
# ballast.conf (and optionally agent.json: extra agent settings taken as they are).
# No mounting: mkfs.vfat and mtools' mcopy write the image file directly.
#
#   images/mkcfgdisk.sh OUT.img ballast.conf [agent.json]
#   images/mkcfgdisk.sh OUT.img - <<< 'node=lb1
#   addr=eth0:10.99.0.11/24'
#
# Attach it as a second disk (qemu: -drive file=OUT.img,if=virtio,format=raw; GNS3: HDB).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 OUT.img ballast.conf|- [agent.json]" >&2; exit 2; }
out=$1 conf=$2 agent=${3:-}
for t in mkfs.vfat mcopy; do
    command -v "$t" >/dev/null || { echo "$t missing: apt-get install dosfstools mtools" >&2; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ "$conf" = - ]; then cat >"$tmp/ballast.conf"; else cp "$conf" "$tmp/ballast.conf"; fi
rm -f "$out"
mkfs.vfat -n BALLASTCFG -C "$out" 2048 >/dev/null  # 2 MiB
export MTOOLS_SKIP_CHECK=1
mcopy -i "$out" "$tmp/ballast.conf" ::ballast.conf
[ -z "$agent" ] || mcopy -i "$out" "$agent" ::agent.json
