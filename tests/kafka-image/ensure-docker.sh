#!/usr/bin/env bash
# Makes sure a Docker engine answers `docker info` on this machine.
# - installs Debian's docker.io (dockerd, containerd, runc) if dockerd is missing;
# - starts dockerd in the background if nothing answers on the local socket,
#   logging to $DOCKERD_LOG, and waits until it answers.
# Idempotent: when the engine already answers it only prints its version.
# See README.md for the flags and why they are what they are.
#
# Env:
#   DOCKERD_LOG            dockerd log file (default /var/log/dockerd.log)
#   DOCKERD_START_TIMEOUT  seconds to wait for the daemon (default 60)
#   DOCKERD_FLAGS          extra/override flags for dockerd (default: none,
#                          with automatic fallbacks if the defaults fail)
set -euo pipefail

SOCK_PATH=/var/run/docker.sock
LOG="${DOCKERD_LOG:-/var/log/dockerd.log}"
TIMEOUT="${DOCKERD_START_TIMEOUT:-60}"

say() { echo "[ensure-docker] $*"; }
die() { echo "[ensure-docker] ERROR: $*" >&2; exit 1; }

answers() { docker info >/dev/null 2>&1; }

report() {
    local cv sv api
    cv="$(docker version -f '{{.Client.Version}}' 2>/dev/null || echo '?')"
    sv="$(docker version -f '{{.Server.Version}}' 2>/dev/null || echo '?')"
    api="$(docker version -f '{{.Server.APIVersion}}' 2>/dev/null || echo '?')"
    say "Docker engine answers: server $sv (API $api, driver $(docker info -f '{{.Driver}}' 2>/dev/null)), client $cv ($(command -v docker)), host ${DOCKER_HOST:-unix://$SOCK_PATH}"
}

# ---------------------------------------------------------------------------
if command -v docker >/dev/null 2>&1 && answers; then
    report
    exit 0
fi

if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST}" != "unix://$SOCK_PATH" ]; then
    die "DOCKER_HOST=$DOCKER_HOST does not answer 'docker info'; this script only starts a local daemon on unix://$SOCK_PATH (unset DOCKER_HOST to use it)."
fi

# ---------------------------------------------------------------------------
# Install the engine if needed (Debian's docker.io: dockerd 20.10 + containerd
# + runc + the Debian CLI in /usr/bin; a newer CLI in /usr/local/bin, e.g. 28.x,
# is kept: it negotiates the API version down to the daemon's 1.41).
if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "dockerd is not installed and this is not root: install the Debian package docker.io (apt-get install docker.io)"
    command -v apt-get >/dev/null 2>&1 || die "dockerd is not installed and apt-get is not available: install a Docker engine"
    say "dockerd missing: apt-get update && apt-get install -y docker.io"
    apt-get update -q >/dev/null || die "apt-get update failed (are the Debian mirrors reachable?)"
    # policy-rc.d in containers/sandboxes stops the package from starting the
    # service; that is fine, dockerd is started below.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >/dev/null \
        || die "apt-get install docker.io failed"
    command -v dockerd >/dev/null 2>&1 || die "docker.io installed but dockerd not on PATH"
fi

# ---------------------------------------------------------------------------
# A dockerd that is still starting (e.g. another run of this script).
pid_running() { [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; }

wait_for_daemon() { # pid, seconds
    local pid=$1 deadline=$(( $(date +%s) + $2 ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        answers && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
        sleep 0.5
    done
    return 1
}

if pid_running; then
    say "dockerd (pid $(cat /var/run/docker.pid)) is running but does not answer yet; waiting up to ${TIMEOUT}s"
    wait_for_daemon "$(cat /var/run/docker.pid)" "$TIMEOUT" && { report; exit 0; }
    die "dockerd pid $(cat /var/run/docker.pid) runs but $SOCK_PATH does not answer after ${TIMEOUT}s; see $LOG"
fi

[ "$(id -u)" = 0 ] || die "no Docker daemon answers and starting dockerd needs root"

# ---------------------------------------------------------------------------
# Start dockerd. The plain defaults (overlay2 on ext4, iptables NAT, docker0
# bridge, userland proxy for 127.0.0.1 port publishing) work on this machine
# kind; the fallbacks cover sandboxes without iptables/overlayfs.
mkdir -p "$(dirname "$LOG")"
if [ -n "${DOCKERD_FLAGS:-}" ]; then
    attempts=("$DOCKERD_FLAGS")
else
    attempts=("" "--iptables=false --ip-masq=false" "--iptables=false --ip-masq=false --storage-driver=vfs")
fi
for flags in "${attempts[@]}"; do
    say "starting dockerd ${flags:-(default flags)}; log: $LOG"
    rm -f "$SOCK_PATH"
    echo "==== $(date -u +%FT%TZ) ensure-docker.sh: dockerd $flags" >> "$LOG"
    # setsid + nohup: the daemon outlives this script and its terminal.
    # shellcheck disable=SC2086
    setsid nohup dockerd --host="unix://$SOCK_PATH" $flags >> "$LOG" 2>&1 < /dev/null &
    pid=$!
    if wait_for_daemon "$pid" "$TIMEOUT"; then
        say "dockerd started (pid $pid) with flags: ${flags:-(defaults)}"
        report
        exit 0
    fi
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        sleep 2
        die "dockerd (pid $pid, flags '${flags}') did not answer on $SOCK_PATH within ${TIMEOUT}s; last log lines:
$(tail -n 15 "$LOG")"
    fi
    say "dockerd exited with flags '${flags}'; last log lines:"
    tail -n 8 "$LOG" | sed 's/^/    /'
done
die "could not start dockerd with any flag set; see $LOG"
