#!/usr/bin/env bash
# Start/stop a private Docker engine whose every path lives under one work folder DIR:
#   DIR/data (data-root), DIR/exec (exec-root), DIR/docker.pid, DIR/docker.sock, DIR/dockerd.log
# Used by the demo, the e2e tests and the benchmark (see docs: real-docker-testing.md). Needs root.
#
# Usage: scripts/docker-engine.sh start DIR   start (installs docker.io if dockerd is missing) and wait
#        scripts/docker-engine.sh stop DIR    SIGTERM, wait for exit, unmount what dockerd left under DIR
#        scripts/docker-engine.sh env DIR     print `export DOCKER_HOST=...` (eval "$(... env DIR)")
#
# Only one engine that uses plugins may run at a time: plugin sockets live in the host's
# /run/docker/plugins/<id>/ whatever --exec-root is. `start` therefore refuses to start when another
# dockerd is running, unless ELP_ALLOW_OTHER_DOCKERD=1.
# Env: ELP_DOCKERD_TIMEOUT (seconds to wait for the engine, default 60), ELP_STORAGE_DRIVER (force one).
set -euo pipefail

usage() { echo "usage: $0 start|stop|env DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
mkdir -p "$2"
W=$(cd "$2" && pwd)
SOCK="$W/docker.sock"
PIDFILE="$W/docker.pid"
TIMEOUT=${ELP_DOCKERD_TIMEOUT:-60}

log() { printf '[docker-engine] %s\n' "$*" >&2; }

engine_pid() { [ -s "$PIDFILE" ] && cat "$PIDFILE"; }

is_running() {
    local pid
    pid=$(engine_pid) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

answers() { docker -H "unix://$SOCK" version >/dev/null 2>&1; }

install_docker() {
    command -v dockerd >/dev/null 2>&1 && return 0
    [ "$(id -u)" = 0 ] || { log "dockerd is missing and we are not root: install docker.io"; exit 1; }
    log "installing docker.io"
    apt-get update -qq
    # The "invoke-rc.d: policy-rc.d denied execution" messages are harmless: no service is started.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
}

# Start dockerd with storage driver $1 and wait until it answers. Returns 1 if it died or timed out.
start_with() {
    local driver=$1 deadline
    log "starting dockerd (storage driver $driver) under $W"
    # setsid: own session, so that a Ctrl-C in the calling terminal does not reach the engine.
    setsid dockerd \
        --storage-driver="$driver" \
        --iptables=false --ip6tables=false --bridge=none \
        --data-root "$W/data" --exec-root "$W/exec" \
        --pidfile "$PIDFILE" -H "unix://$SOCK" \
        >>"$W/dockerd.log" 2>&1 </dev/null &
    local pid=$!
    deadline=$(( $(date +%s) + TIMEOUT ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if answers; then log "dockerd $pid answers on unix://$SOCK"; return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            log "dockerd exited early (storage driver $driver); last log lines:"
            tail -n 5 "$W/dockerd.log" >&2
            return 1
        fi
        sleep 0.2
    done
    log "dockerd did not answer within $TIMEOUT s; see $W/dockerd.log"
    kill -TERM "$pid" 2>/dev/null || true
    return 1
}

do_start() {
    [ "$(id -u)" = 0 ] || { log "a private dockerd needs root"; exit 1; }
    if is_running && answers; then log "already running (pid $(engine_pid))"; return 0; fi
    install_docker
    if pgrep -x dockerd >/dev/null && [ "${ELP_ALLOW_OTHER_DOCKERD:-0}" != 1 ]; then
        log "another dockerd is running (pids: $(pgrep -x dockerd | tr '\n' ' ')); refusing to start a" \
            "second engine (plugin sockets would share /run/docker/plugins). Stop it or set ELP_ALLOW_OTHER_DOCKERD=1."
        exit 1
    fi
    if [ -n "${ELP_STORAGE_DRIVER:-}" ]; then
        start_with "$ELP_STORAGE_DRIVER" || exit 1
    else
        # overlay2 is fast; it fails on some file systems (e.g. overlay-on-overlay), then vfs always works.
        start_with overlay2 || { do_stop_quiet; start_with vfs; } || exit 1
    fi
}

# Unmount everything still mounted under $W (deepest first); dockerd leaves at least exec/netns/default.
unmount_all() {
    umount "$W/exec/netns/default" 2>/dev/null || true
    local m
    awk -v w="$W/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
}

do_stop_quiet() {
    local pid _
    if pid=$(engine_pid) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        # dockerd stops running containers and plugins first (up to 10 s each for a stubborn one).
        for _ in $(seq 1 300); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "dockerd $pid still alive after 30 s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
        fi
    fi
    rm -f "$PIDFILE"
    unmount_all
}

case "$action" in
    start) do_start ;;
    stop) do_stop_quiet; log "stopped engine under $W" ;;
    env) echo "export DOCKER_HOST=unix://$SOCK" ;;
    *) usage ;;
esac
