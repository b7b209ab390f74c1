#!/usr/bin/env bash
# Create the local images that the demo, the e2e tests and the benchmark need, without any registry:
#   test/busybox                        busybox-static rootfs (docker import)
#   elastic-logging-plugin/base:bookworm  debootstrap bookworm minbase + python3 (the plugin's BASE_IMAGE)
# Talks to whatever engine DOCKER_HOST (or the default socket) points at. Images that already exist are
# skipped; the debootstrap result is cached as a tarball under $ELP_CACHE_DIR so repeat runs (and new
# private engines) only pay for a `docker import` instead of a 40-55 s debootstrap.
#
# Usage: scripts/make-images.sh [busybox|base|base-tar|all]     (default: all; base-tar: only the cache)
# Env:   ELP_CACHE_DIR (default /var/cache/elastic-logging-plugin), DEBIAN_MIRROR, BUSYBOX_IMAGE, BASE_IMAGE,
#        ARCH (Debian name: amd64, arm64; default this machine's). A foreign ARCH is bootstrapped in two stages, the
#        second under qemu-user-static through binfmt_misc (scripts/qemu-binfmt.sh registers it; several minutes).
set -euo pipefail

what=${1:-all}
CACHE_DIR=${ELP_CACHE_DIR:-/var/cache/elastic-logging-plugin}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BUSYBOX_IMAGE=${BUSYBOX_IMAGE:-test/busybox}
HOST_ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
ARCH=${ARCH:-$HOST_ARCH}
# The host's base keeps its historical name; another arch's gets the arch in its tag.
if [ "$ARCH" = "$HOST_ARCH" ]; then DEFAULT_BASE=elastic-logging-plugin/base:bookworm
else DEFAULT_BASE=elastic-logging-plugin/base:bookworm-$ARCH; fi
BASE_IMAGE=${BASE_IMAGE:-$DEFAULT_BASE}
SUITE=bookworm
# python3 is the only thing the plugin needs from Debian; pip is brought in as a wheel by the build
# (see Dockerfile), so python3-pip is not needed here.
INCLUDE=python3
BASE_TAR="$CACHE_DIR/base-$SUITE-$ARCH-${INCLUDE//,/_}.tar"

log() { printf '[make-images] %s\n' "$*" >&2; }

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# apt-get install PACKAGES... when COMMAND is missing (root only; on a fresh Debian machine).
need() {
    local cmd=$1; shift
    command -v "$cmd" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" != 0 ]; then
        log "$cmd is missing; install: $*"; exit 1
    fi
    log "installing $* (for $cmd)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

make_busybox() {
    if image_exists "$BUSYBOX_IMAGE"; then log "$BUSYBOX_IMAGE exists"; return; fi
    # Debian's busybox-static installs /bin/busybox; the dynamic `busybox` package would not run in an
    # empty rootfs, so check that the binary is really static.
    if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then
        [ "$(id -u)" = 0 ] || { log "a static /bin/busybox is needed: install busybox-static"; exit 1; }
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static >/dev/null
    fi
    local dir
    dir=$(mktemp -d /tmp/elp-busybox.XXXXXX)
    mkdir -p "$dir/bin" "$dir/etc" "$dir/tmp" "$dir/root"
    chmod 1777 "$dir/tmp"
    cp /bin/busybox "$dir/bin/busybox"
    local applet
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -s busybox "$dir/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$dir/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
    tar -C "$dir" -c . | docker import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' - "$BUSYBOX_IMAGE" >/dev/null
    rm -rf "$dir"
    log "imported $BUSYBOX_IMAGE"
}

# Build the cached rootfs tarball of the base image (no Docker engine needed).
make_base_tar() {
    if [ ! -s "$BASE_TAR" ]; then
        need debootstrap debootstrap
        local dir t0
        dir=$(mktemp -d /tmp/elp-debootstrap.XXXXXX)
        t0=$(date +%s)
        if [ "$ARCH" = "$HOST_ARCH" ]; then
            log "debootstrap $SUITE (minbase + $INCLUDE) into $dir, takes about a minute"
            debootstrap --variant=minbase --include="$INCLUDE" --arch="$ARCH" "$SUITE" "$dir" "$MIRROR" \
                >"$dir.log" 2>&1 || { tail -n 30 "$dir.log" >&2; exit 1; }
        else
            # Foreign arch: unpack on the host, then run the package scripts inside the new root under qemu.
            "$(dirname "$0")/qemu-binfmt.sh" "$ARCH"
            log "debootstrap --foreign $SUITE for $ARCH (minbase + $INCLUDE) into $dir, second stage under qemu:" \
                "several minutes"
            { debootstrap --foreign --variant=minbase --include="$INCLUDE" --arch="$ARCH" "$SUITE" "$dir" "$MIRROR" \
                && chroot "$dir" /debootstrap/debootstrap --second-stage; } \
                >"$dir.log" 2>&1 || { tail -n 30 "$dir.log" >&2; exit 1; }
        fi
        # Slim: documentation, translations and apt's downloaded package lists/archives are never used.
        rm -rf "$dir"/usr/share/{doc,man,locale,info}/* "$dir"/var/lib/apt/lists/* \
            "$dir"/var/cache/apt/archives/*.deb "$dir"/var/cache/apt/*.bin "$dir"/var/log/*.log
        mkdir -p "$CACHE_DIR"
        # Write to a temporary name first so an interrupted run never leaves a truncated cache.
        tar --numeric-owner -C "$dir" -cf "$BASE_TAR.tmp" .
        mv "$BASE_TAR.tmp" "$BASE_TAR"
        rm -rf "$dir" "$dir.log"
        log "debootstrap done in $(( $(date +%s) - t0 )) s, cached as $BASE_TAR ($(du -h "$BASE_TAR" | cut -f1))"
    else
        log "using cached $BASE_TAR"
    fi
}

make_base() {
    if image_exists "$BASE_IMAGE"; then log "$BASE_IMAGE exists"; return; fi
    make_base_tar
    docker import --platform "linux/$ARCH" -c 'CMD ["/usr/bin/python3"]' -c 'ENV LANG=C.UTF-8' \
        "$BASE_TAR" "$BASE_IMAGE" >/dev/null
    log "imported $BASE_IMAGE"
}

case "$what" in
    busybox) make_busybox ;;
    base) make_base ;;
    base-tar) make_base_tar ;;
    all) make_busybox; make_base ;;
    *) echo "usage: $0 [busybox|base|base-tar|all]" >&2; exit 2 ;;
esac
