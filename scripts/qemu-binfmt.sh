#!/usr/bin/env bash
# Make this machine run binaries of another architecture through qemu-user-static (Debian package), so that a
# foreign debootstrap can run its second stage and docker can run (and build) images of that architecture.
# Registers qemu's binfmt_misc entry with flags OPF ("F": the kernel opens the interpreter now, so it works inside
# chroots and containers that have no qemu of their own). Mounts binfmt_misc first if needed. Idempotent. Root only.
#
# Usage: scripts/qemu-binfmt.sh ARCH        (Debian name: arm64; amd64 on an amd64 host does nothing)
set -euo pipefail

log() { printf '[qemu-binfmt] %s\n' "$*" >&2; }
arch=${1:?usage: $0 ARCH}
[ "$arch" = "$(dpkg --print-architecture 2>/dev/null || echo amd64)" ] && exit 0
case "$arch" in
    arm64) qemu=aarch64 ;;
    amd64) qemu=x86_64 ;;
    *) log "unsupported ARCH $arch (arm64, amd64)"; exit 2 ;;
esac
BINFMT=/proc/sys/fs/binfmt_misc
if [ -e "$BINFMT/qemu-$qemu" ]; then exit 0; fi
[ "$(id -u)" = 0 ] || { log "registering qemu-$qemu in binfmt_misc needs root"; exit 1; }
if ! command -v "qemu-$qemu-static" >/dev/null 2>&1; then
    log "installing qemu-user-static"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null
fi
[ -e "$BINFMT/register" ] || mount -t binfmt_misc binfmt_misc "$BINFMT" \
    || { log "cannot mount binfmt_misc on $BINFMT (a container without the privilege?)"; exit 1; }
conf=/usr/lib/binfmt.d/qemu-$qemu.conf
[ -s "$conf" ] || { log "$conf is missing (qemu-user-static installs it)"; exit 1; }
cat "$conf" >"$BINFMT/register"
log "registered qemu-$qemu in binfmt_misc ($(sed -n 's/^flags: //p' "$BINFMT/qemu-$qemu"))"
