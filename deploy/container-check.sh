#!/usr/bin/env bash
# Build the Dockerfile with rootful podman and check the container for real:
# every demo app answers, the server is not root, the HEALTHCHECK passes and
# SIGTERM (`podman stop`) stops it cleanly within 10 s.
#
#   sudo deploy/container-check.sh            # env: IMAGE (default ctxserve:test)
#
# Where no base image can be pulled, a stand-in for python:3.13-slim is made
# from Debian packages (debootstrap, ~1 min) unless one is already there.
# The container shares the host network but listens on 127.0.0.1 only, on a
# free port; this script talks to nothing else (the build itself reaches the
# package registries). Every wait is bounded; the container is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-ctxserve:test}
BASE=docker.io/library/python:3.13-slim
NAME=ctxserve-check-$$
ROOTFS=
LIMITS=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
PODMAN=(podman --runtime runc)

say() { printf 'container-check: %s\n' "$*"; }
fail() { say "FAIL: $*" >&2; exit 1; }

cleanup() {
    local status=$?
    if "${PODMAN[@]}" container exists "$NAME" 2>/dev/null; then
        [ "$status" -eq 0 ] || { say "last lines of the server's output:"; podman logs --tail 30 "$NAME" 2>&1 || true; }
        "${PODMAN[@]}" rm -f -t 0 "$NAME" >/dev/null 2>&1 || true
    fi
    [ -z "$ROOTFS" ] || rm -rf "$ROOTFS"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
    say "installing podman and runc"
    timeout 600 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq podman runc debootstrap >/dev/null
fi

if ! podman image exists "$BASE"; then
    say "no $BASE: making a stand-in from Debian packages"
    command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq debootstrap >/dev/null
    ROOTFS=$(mktemp -d /tmp/ctxserve-rootfs.XXXXXX)
    timeout 900 debootstrap --variant=minbase \
        --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates,curl \
        trixie "$ROOTFS" >"$ROOTFS.log" 2>&1 || { tail -20 "$ROOTFS.log" >&2; fail "debootstrap"; }
    rm -f "$ROOTFS".log "$ROOTFS"/usr/lib/python3*/EXTERNALLY-MANAGED
    tar -C "$ROOTFS" -c . | podman import -q --change 'CMD ["python3"]' - "$BASE" >/dev/null
    rm -rf "$ROOTFS"; ROOTFS=
fi

old=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
certs=(); [ -d /etc/ssl/certs ] && certs=(-v /etc/ssl/certs:/etc/ssl/certs:ro)
say "building $IMAGE"
start=$SECONDS
timeout 1200 "${PODMAN[@]}" build --pull=never --format docker --network host "${LIMITS[@]}" \
    "${certs[@]}" -t "$IMAGE" . >/tmp/ctxserve-check-build.log 2>&1 \
    || { tail -30 /tmp/ctxserve-check-build.log >&2; fail "podman build (log: /tmp/ctxserve-check-build.log)"; }
new=$(podman image inspect --format '{{.Id}}' "$IMAGE")
[ -z "$old" ] || [ "$old" = "$new" ] || podman rmi "$old" >/dev/null 2>&1 || true
say "built in $((SECONDS - start)) s, $(podman image inspect --format '{{.Size}}' "$IMAGE" | numfmt --to=si)B"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
# (podman's complaints about a missing systemd, for the healthcheck timer, are harmless)
out=$("${PODMAN[@]}" run -d --name "$NAME" --network host "${LIMITS[@]}" \
    -e CTXSERVE_HEALTHCHECK_URL="$url/hello/" \
    "$IMAGE" ctxserve serve deploy/ctxserve.toml --bind "127.0.0.1:$port" 2>&1) || fail "podman run: $out"

deadline=$((SECONDS + 30))
until curl -fsS -m 2 -o /dev/null "$url/hello/" 2>/dev/null; do
    [ "$(podman inspect --format '{{.State.Running}}' "$NAME")" = true ] || fail "the container exited"
    [ "$SECONDS" -lt "$deadline" ] || fail "no answer on $url within 30 s"
    sleep 0.5
done

expect() {  # expect PATH TEXT: GET PATH answers 200 with TEXT in the body
    local body
    body=$(curl -fsS -m 5 "$url$1") || fail "GET $1"
    grep -qF -- "$2" <<<"$body" || fail "GET $1: no '$2' in: $body"
    say "GET $1: ok"
}
expect '/ledger/?amount=10&split=3' 'ledger: 10 / 3 = 3.33333'
expect /hello/ 'bonjour from /hello'
expect /env/ 'ENVINFO_COLOR=blue'

uid=$(podman exec "$NAME" id -u)
pid1=$(podman exec "$NAME" awk '/^Uid:/ {print $2}' /proc/1/status)
if [ "$uid" = 0 ] || [ "$pid1" = 0 ]; then fail "running as root (exec uid $uid, PID 1 uid $pid1)"; fi
say "uid: $uid (PID 1: $pid1)"

out=$(timeout 30 podman healthcheck run "$NAME" 2>&1) || fail "healthcheck: $out"
say "healthcheck: healthy"

start=$(date +%s%N)
timeout 20 podman stop -t 10 "$NAME" >/dev/null 2>&1 || fail "podman stop"
ms=$((($(date +%s%N) - start) / 1000000))
code=$(podman inspect --format '{{.State.ExitCode}}' "$NAME")
if [ "$code" != 0 ] || [ "$ms" -ge 10000 ]; then fail "stop took ${ms} ms, exit code $code"; fi
say "stopped by SIGTERM in ${ms} ms, exit code 0"
say "all checks passed"
