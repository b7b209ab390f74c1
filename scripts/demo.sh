#!/usr/bin/env bash
# `make demo`: build the plugin from this working tree, log a busybox container through it, show what
# `docker logs` returns (served by the plugin) and the files of the local store, then clean up.
# If no Docker engine answers (DOCKER_HOST or the default socket), a private one is started under a
# temporary folder and stopped at the end (needs root; installs docker.io when missing).
# Works without any registry: the images come from scripts/make-images.sh (set BASE_IMAGE to build the
# plugin on another base, e.g. python:3.11-slim-bookworm on a machine that can pull it).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PLUGIN=elastic-logging-plugin:latest
CONTAINER=elp-demo
BUSYBOX_IMAGE=test/busybox

if [ -t 1 ]; then bold=$'\033[1m' normal=$'\033[0m'; else bold='' normal=''; fi
section() { printf '\n%s==== %s ====%s\n' "$bold" "$*" "$normal"; }

WORK=$(mktemp -d /tmp/elp-demo.XXXXXX)
DATA="$WORK/plugin-data"        # the plugin's `data` mount source: /var/lib/docker inside the plugin
STARTED_ENGINE=0

cleanup() {
    local rc=$?
    section "Clean-up"
    docker rm -f "$CONTAINER" >/dev/null 2>&1 || true
    if docker plugin inspect "$PLUGIN" >/dev/null 2>&1; then
        docker plugin disable -f "$PLUGIN" >/dev/null 2>&1 || true
        docker plugin rm -f "$PLUGIN" >/dev/null 2>&1 || true
        echo "plugin $PLUGIN removed"
    fi
    if [ "$STARTED_ENGINE" = 1 ]; then
        if [ "$rc" != 0 ]; then
            echo "--- last plugin lines of $WORK/engine/dockerd.log ---"
            grep 'plugin=' "$WORK/engine/dockerd.log" | tail -n 30 || true
        fi
        "$ROOT/scripts/docker-engine.sh" stop "$WORK/engine" || true
    fi
    rm -rf "$WORK"
    if [ "$rc" = 0 ]; then echo "demo finished"; else echo "demo FAILED (exit $rc)"; fi
    exit "$rc"
}
trap cleanup EXIT

section "Docker engine"
if docker version >/dev/null 2>&1; then
    echo "using the running engine (${DOCKER_HOST:-default socket})"
else
    echo "no engine answers: starting a private dockerd under $WORK/engine"
    "$ROOT/scripts/docker-engine.sh" start "$WORK/engine"
    STARTED_ENGINE=1
    eval "$("$ROOT/scripts/docker-engine.sh" env "$WORK/engine")"
    export DOCKER_HOST
fi
docker version --format 'client {{.Client.Version}}, server {{.Server.Version}}'

section "Images (no registry needed)"
if [ -n "${BASE_IMAGE:-}" ]; then
    "$ROOT/scripts/make-images.sh" busybox
else
    "$ROOT/scripts/make-images.sh" all
    export BASE_IMAGE=elastic-logging-plugin/base:bookworm
fi
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E "^($BUSYBOX_IMAGE|${BASE_IMAGE%%:*})" || true

section "Build and enable the plugin (BASE_IMAGE=$BASE_IMAGE, data.source=$DATA)"
"$ROOT/scripts/build-plugin.sh" "data.source=$DATA"

section "Run a container that logs through the plugin"
# Three lines on stdout, two on stderr, and a last stdout line without a trailing newline.
docker rm -f "$CONTAINER" >/dev/null 2>&1 || true
set -x
docker run --name "$CONTAINER" --log-driver elastic-logging-plugin "$BUSYBOX_IMAGE" sh -c '
    echo "stdout line 1"; echo "stderr line 1" >&2
    echo "stdout line 2"; echo "stderr line 2" >&2
    echo "stdout line 3"
    printf "stdout last line, no newline"'
{ set +x; } 2>/dev/null
CID=$(docker inspect -f '{{.Id}}' "$CONTAINER")

section "docker logs $CONTAINER   (stdout and stderr, read back from the plugin)"
docker logs "$CONTAINER"
echo
section "docker logs $CONTAINER 2>/dev/null   (stdout only)"
docker logs "$CONTAINER" 2>/dev/null
echo
section "docker logs --tail 2 $CONTAINER"
docker logs --tail 2 "$CONTAINER"
echo
section "docker logs --timestamps --tail 3 $CONTAINER"
docker logs --timestamps --tail 3 "$CONTAINER"
echo

section "Local store: $DATA/elastic-logging-plugin (container $CID)"
ls -laR "$DATA/elastic-logging-plugin"
echo
du -ah "$DATA/elastic-logging-plugin"
