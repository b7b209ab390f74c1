#!/usr/bin/env bash
# Build the managed plugin from the working tree and install + enable it on the engine that DOCKER_HOST
# (or the default socket) points at:
#   1. build/wheels/ARCH: our wheel + binary wheels of every runtime dependency (and pip), for CPython 3.11 on
#      this architecture, made on the host (the image build then needs no network);
#   2. docker build (Dockerfile) -> docker create + docker export -> build/plugin/rootfs, + config.json;
#   3. docker plugin disable/rm of a previous one, docker plugin create, docker plugin set SETTINGS...,
#      docker plugin enable --timeout 0 (the default 30 s timeout would cut `docker logs -f`);
#      with PUSH=1 instead: docker plugin push (to the registry named in PLUGIN_NAME), not enabled here.
#
# Usage: scripts/build-plugin.sh [SETTING...]      e.g. scripts/build-plugin.sh data.source=/srv/logs
# Env:   PLUGIN_NAME  (default elastic-logging-plugin:latest; to push: <registry>/<name>:<tag>)
#        BASE_IMAGE   (default python:3.11-slim-bookworm; offline: elastic-logging-plugin/base:bookworm).
#                     When the default cannot be pulled, the local Debian base is built (scripts/make-images.sh)
#                     and used instead.
#        ARCH         Debian arch of the plugin (amd64, arm64; default this machine's). A foreign one is built
#                     under qemu-user-static (scripts/qemu-binfmt.sh registers it; root), into build/plugin-ARCH.
#        PUSH         1: docker plugin push after create, no enable
#        PYTHON       host python used to run pip (default .venv/bin/python if present, else python3)
# Dependency wheels are downloaded again only when pyproject.toml's dependency list changes.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
NAME=${PLUGIN_NAME:-elastic-logging-plugin:latest}
DEFAULT_BASE_IMAGE=python:3.11-slim-bookworm
BASE_IMAGE=${BASE_IMAGE:-$DEFAULT_BASE_IMAGE}
HOST_ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
ARCH=${ARCH:-$HOST_ARCH}
case "$ARCH" in
    amd64) MACHINE=x86_64 ;;
    arm64) MACHINE=aarch64 ;;
    *) echo "[build-plugin] unsupported ARCH=$ARCH (amd64, arm64)" >&2; exit 2 ;;
esac
PUSH=${PUSH:-0}
if [ "$ARCH" = "$HOST_ARCH" ]; then
    BUILD_IMAGE=elastic-logging-plugin-rootfs:build
    LOCAL_BASE=elastic-logging-plugin/base:bookworm
    PLUGIN_DIR=build/plugin
else
    BUILD_IMAGE=elastic-logging-plugin-rootfs:build-$ARCH
    LOCAL_BASE=elastic-logging-plugin/base:bookworm-$ARCH
    PLUGIN_DIR=build/plugin-$ARCH
fi
# One folder per arch; the Dockerfile picks its own with dpkg --print-architecture (a build argument would not do:
# the legacy builder commits an ARG step as an image of the host's platform, and the next COPY then refuses it).
WHEELS=build/wheels/$ARCH
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
# The plugin runs CPython 3.11 (both possible bases) on glibc 2.36 (bookworm) on ARCH ($MACHINE).
# pip does not expand a manylinux_2_36 --platform to older glibc tags, so list them all (2_5 = manylinux1,
# 2_12 = manylinux2010, 2_17 = manylinux2014).
PY_VERSION=3.11
PLATFORM_ARGS=()
for glibc_minor in $(seq 36 -1 5); do
    PLATFORM_ARGS+=(--platform "manylinux_2_${glibc_minor}_$MACHINE")
done
# ... and the legacy names, which some wheels carry alone (protobuf's upb wheel is only
# "manylinux2014_x86_64": without this pip falls back to protobuf's pure-Python wheel, 10x slower).
for legacy in manylinux2014 manylinux2010 manylinux1; do
    PLATFORM_ARGS+=(--platform "${legacy}_$MACHINE")
done

log() { printf '[build-plugin] %s\n' "$*" >&2; }
timed() { local t0=$SECONDS; "$@"; log "  done in $(( SECONDS - t0 )) s"; }

build_wheels() {
    mkdir -p "$WHEELS"
    # Our own wheel, rebuilt every time from the working tree (same version number, so drop the old).
    rm -f "$WHEELS"/elastic_logging_plugin-*.whl
    "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$WHEELS" . \
        2> >(grep -v "^WARNING: Location 'file:" >&2)
    rm -rf build/lib build/bdist.* ./*.egg-info
    # Runtime dependencies as listed in pyproject.toml, binary wheels only, for the plugin's interpreter
    # (not necessarily the host's). pip itself too: the Dockerfile runs it from its wheel.
    local deps stamp="$WHEELS/.deps-stamp"
    deps=$("$PYTHON" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')
    # Skip the download (about 10 s even when everything is there) when the list has not changed.
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$deps $PY_VERSION $MACHINE" ]; then
        log "  dependency wheels up to date (delete $stamp to refresh)"
        return
    fi
    mapfile -t reqs <<<"$deps"
    # grep: hide pip's warnings about missing local index folders that some pip configurations list.
    "$PYTHON" -m pip download --quiet --disable-pip-version-check \
        --only-binary=:all: --python-version "$PY_VERSION" --implementation cp --abi "cp${PY_VERSION/./}" \
        "${PLATFORM_ARGS[@]}" --dest "$WHEELS" pip "${reqs[@]}" \
        2> >(grep -v "^WARNING: Location 'file:" >&2)
    echo "$deps $PY_VERSION $MACHINE" >"$stamp"
    log "  $(find "$WHEELS" -name '*.whl' | wc -l) wheels, $(du -sh "$WHEELS" | cut -f1) in $WHEELS"
}

# True when IMAGE is present locally for ARCH.
have_image() {
    [ "$(docker image inspect -f '{{.Architecture}}' "$1" 2>/dev/null)" = "$ARCH" ]
}

# Make sure BASE_IMAGE is there for ARCH: pull it, or, for the default one on a host that cannot pull it
# (offline, no registry access), build the local Debian base instead and say so.
ensure_base() {
    have_image "$BASE_IMAGE" && return 0
    if [ "$BASE_IMAGE" != "$LOCAL_BASE" ] \
        && docker pull --platform "linux/$ARCH" "$BASE_IMAGE" >build/docker-pull.log 2>&1; then
        return 0
    fi
    if [ "$BASE_IMAGE" != "$DEFAULT_BASE_IMAGE" ] && [ "$BASE_IMAGE" != "$LOCAL_BASE" ]; then
        cat build/docker-pull.log >&2
        log "cannot pull BASE_IMAGE=$BASE_IMAGE for linux/$ARCH (see above)"
        exit 1
    fi
    if [ "$BASE_IMAGE" = "$DEFAULT_BASE_IMAGE" ]; then
        log "cannot pull $BASE_IMAGE ($(tail -n 1 build/docker-pull.log)): building the local Debian base" \
            "$LOCAL_BASE instead (scripts/make-images.sh base)"
    fi
    ARCH=$ARCH BASE_IMAGE=$LOCAL_BASE scripts/make-images.sh base
    BASE_IMAGE=$LOCAL_BASE
}

build_rootfs() {
    mkdir -p build
    if [ "$ARCH" != "$HOST_ARCH" ]; then scripts/qemu-binfmt.sh "$ARCH"; fi
    ensure_base
    # Legacy builder: no buildx/BuildKit needed; --network host: the engines used here have no bridge.
    if ! DOCKER_BUILDKIT=0 docker build --network host --platform "linux/$ARCH" \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        -t "$BUILD_IMAGE" -f Dockerfile . >build/docker-build.log 2>&1; then
        tail -n 40 build/docker-build.log >&2
        log "docker build failed (full output: build/docker-build.log)"
        exit 1
    fi
    local cid
    cid=$(docker create "$BUILD_IMAGE")
    rm -rf "$PLUGIN_DIR"
    mkdir -p "$PLUGIN_DIR/rootfs"
    docker export "$cid" | tar -x -C "$PLUGIN_DIR/rootfs"
    docker rm "$cid" >/dev/null
    cp config.json "$PLUGIN_DIR/config.json"
    log "  rootfs $(du -sh "$PLUGIN_DIR/rootfs" | cut -f1)"
}

install_plugin() {
    if docker plugin inspect "$NAME" >/dev/null 2>&1; then
        docker plugin disable -f "$NAME" >/dev/null 2>&1 || true
        docker plugin rm -f "$NAME" >/dev/null
    fi
    docker plugin create "$NAME" "$PLUGIN_DIR" >/dev/null
    # A pushed plugin carries config.json's defaults: settings are the installer's business.
    if [ $# -gt 0 ] && [ "$PUSH" != 1 ]; then
        # A mount source must exist at enable time: create local folders given as *.source=/path.
        local s
        for s in "$@"; do
            case "$s" in *.source=/*) mkdir -p "${s#*=}" ;; esac
        done
        docker plugin set "$NAME" "$@"
    fi
}

log "wheels ($ARCH) -> $WHEELS (pip: $PYTHON)"
timed build_wheels
log "docker build (BASE_IMAGE=$BASE_IMAGE, linux/$ARCH) + export -> $PLUGIN_DIR/rootfs"
timed build_rootfs
log "docker plugin create $NAME $*"
timed install_plugin "$@"
if [ "$PUSH" = 1 ]; then
    log "docker plugin push $NAME"
    timed docker plugin push "$NAME" >&2
    exit 0
fi
log "docker plugin enable --timeout 0 $NAME"
timed docker plugin enable --timeout 0 "$NAME" >/dev/null
docker plugin ls >&2
