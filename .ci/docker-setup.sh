#!/usr/bin/env bash
# Prepare the docker and bubblewrap test tier: packages, a running dockerd, the offline sandbox image.
# Idempotent; run as root before the tests. Every step is skipped when its result is already there.
set -euo pipefail

IMAGE="${AGENT_SANDBOX_IMAGE:-agent-sandbox:bookworm}"
SUITE="${AGENT_SANDBOX_SUITE:-bookworm}"
MIRROR="${AGENT_SANDBOX_MIRROR:-http://deb.debian.org/debian}"
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/dockerd-ci.log}"
DOCKERD_WAIT_S="${DOCKERD_WAIT_S:-60}"

log() { printf '[docker-setup] %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (it installs packages and starts dockerd)"
    exit 1
fi

# --- packages -------------------------------------------------------------------------------------
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- daemon ---------------------------------------------------------------------------------------
if docker info >/dev/null 2>&1; then
    log "docker daemon already answers"
else
    start_dockerd() {
        log "starting dockerd $* (log: $DOCKERD_LOG)"
        # setsid + nohup: the daemon outlives this script and the CI step that ran it.
        setsid nohup dockerd "$@" >"$DOCKERD_LOG" 2>&1 </dev/null &
        dockerd_pid=$!
        local deadline=$((SECONDS + DOCKERD_WAIT_S))
        until docker info >/dev/null 2>&1; do
            if [ "$SECONDS" -ge "$deadline" ] || ! kill -0 "$dockerd_pid" 2>/dev/null; then
                return 1
            fi
            sleep 0.5
        done
    }
    if ! start_dockerd; then
        if grep -qi iptables "$DOCKERD_LOG"; then
            # Some kernels (nested containers) refuse docker's iptables rules; the bridge works without them.
            kill "$dockerd_pid" 2>/dev/null || true
            wait "$dockerd_pid" 2>/dev/null || true
            start_dockerd --iptables=false || { tail -n 30 "$DOCKERD_LOG" >&2; exit 1; }
        else
            log "dockerd did not answer within ${DOCKERD_WAIT_S}s; last lines of its log:"
            tail -n 30 "$DOCKERD_LOG" >&2
            exit 1
        fi
    fi
    log "dockerd is up"
fi

# --- image (built offline from Debian packages; registries are not reachable) ----------------------
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "image $IMAGE already present"
else
    rootfs="$(mktemp -d /tmp/agent-sandbox-rootfs.XXXXXX)"
    trap 'rm -rf "$rootfs"' EXIT
    log "building $IMAGE with debootstrap ($SUITE from $MIRROR); this takes a minute or two"
    start=$SECONDS
    debootstrap --variant=minbase --include=python3,git,ca-certificates "$SUITE" "$rootfs" "$MIRROR" \
        >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; exit 1; }
    # Smaller image and faster import: package caches and indexes are not needed inside.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import \
        --change 'CMD ["/bin/bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        - "$IMAGE" >/dev/null
    rm -f "$rootfs.log"
    log "built $IMAGE in $((SECONDS - start))s"
fi
