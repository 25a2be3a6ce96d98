#!/usr/bin/env bash
# Build, offline (no container registry needed), a Debian 12 (bookworm) image that boots
# systemd as PID 1, for testing the installer (bootstrap/bootstrap.sh), the .deb and the
# unit; print its reference (orrery-systemd:<recipe-hash>) on stdout. Progress goes to stderr.
#
# Usage: tests/images/systemd.sh [--force] [--hash] [--help]
#   --force   rebuild even if orrery-systemd:<hash> already exists
#   --hash    print the recipe hash and exit (no Docker needed)
#   --help    show this help
# Environment:
#   ORRERY_DEBIAN_MIRROR   Debian mirror for debootstrap
#                          (default: the one apt uses on this machine, else http://deb.debian.org/debian)
#   ORRERY_BUILD_TMPDIR    where the temporary root file system goes (default /var/tmp)
# Needs: root (debootstrap), a running Docker engine, network to a Debian mirror.
#
# Boot it (works on a cgroup v1 host; --privileged is not needed):
#   C=$(docker run -d --network host --cap-add SYS_ADMIN \
#         --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
#         -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock \
#         -v /var/run/docker.sock:/var/run/docker.sock IMAGE)
#   docker exec "$C" systemctl is-system-running --wait     # -> running (about 0.5 s)
#   docker rm -f "$C"
# The image's CMD is /lib/systemd/systemd, its STOPSIGNAL SIGRTMIN+3 (a clean shutdown on
# `docker stop`), and ENV container=docker tells systemd it is in a container. Units that
# make no sense there, or that could reach the host through --network host, are masked
# (getty, udev, networkd, resolved, timesyncd, sysctl, firstboot, ...). /etc/machine-id is
# empty: each container gets a fresh id at boot. The journal is kept in /run (volatile).
# A `docker exec` right after `docker run -d` can come before systemd has made its socket
# ("Failed to connect to bus"): /usr/local/bin/systemctl waits for it (up to 30 s, only
# while PID 1 is systemd), then runs /bin/systemctl.
set -euo pipefail
# The whole body is one brace group, so bash parses it completely before
# running it: editing or replacing this file during a build cannot derail it.
{

REPO=orrery-systemd
SUITE=bookworm
DEB_PACKAGES=systemd,systemd-sysv,dbus,curl,ca-certificates,procps

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"

log() { printf '[systemd.sh %3ds] %s\n' "$SECONDS" "$*" >&2; }
die() { printf '[systemd.sh %3ds] ERROR: %s\n' "$SECONDS" "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$SELF"; }

FORCE=0
HASH_ONLY=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        --hash) HASH_ONLY=1 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $arg" ;;
    esac
done

# ---------------------------------------------------------------- recipe hash
# The recipe is this script alone: sha256 over its "sha256sum" line (content hash +
# name), truncated to 16 hex chars -- the same scheme as build.sh.
recipe_hash() {
    (cd "$HERE" && sha256sum -- "$(basename "$SELF")") | sha256sum | cut -c1-16
}
HASH="$(recipe_hash)"
[[ "$HASH" =~ ^[0-9a-f]{16}$ ]] || die "could not compute the recipe hash"
if [[ $HASH_ONLY == 1 ]]; then echo "$HASH"; exit 0; fi
IMAGE="$REPO:$HASH"

# ---------------------------------------------------------------- docker + cache
command -v docker >/dev/null 2>&1 || die "docker CLI not found"
docker info >/dev/null 2>&1 \
    || die "cannot talk to the Docker engine (is dockerd running? try: dockerd >/var/log/dockerd.log 2>&1 &)"

image_exists() { docker image inspect "$IMAGE" >/dev/null 2>&1; }
finish() { # tag :latest and print the reference
    docker tag "$IMAGE" "$REPO:latest" >/dev/null || die "docker tag $IMAGE $REPO:latest failed"
    echo "$IMAGE"
}

if [[ $FORCE == 0 ]] && image_exists; then
    log "cache hit: $IMAGE already exists"
    finish
    exit 0
fi

# ---------------------------------------------------------------- build prerequisites
[[ $(id -u) == 0 ]] || die "building needs root (debootstrap); $IMAGE is not built yet"

TMPBASE="${ORRERY_BUILD_TMPDIR:-/var/tmp}"
mkdir -p "$TMPBASE"

# Serialise concurrent builds; re-check the cache once we hold the lock.
LOCK="$TMPBASE/orrery-systemd-build.lock"
exec 9>"$LOCK" || die "cannot open lock file $LOCK"
if ! flock -n 9; then
    log "another build holds $LOCK, waiting for it"
    flock 9
fi
if [[ $FORCE == 0 ]] && image_exists; then
    log "cache hit (built by a concurrent run): $IMAGE"
    finish
    exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y --no-install-recommends debootstrap >&2 \
        || { apt-get update >&2 && apt-get install -y --no-install-recommends debootstrap >&2; }; } \
        || die "could not install debootstrap"
fi

# The Debian mirror apt uses here: first "deb" source for $SUITE in
# sources.list / sources.list.d (one-line and deb822 formats).
detect_mirror() {
    local f files=() uri
    [[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] && files+=("$f")
    done
    for f in "${files[@]}"; do
        if [[ $f == *.sources ]]; then
            uri="$(awk -v suite="$SUITE" '
                function flush() {
                    if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris != "" && !done) {
                        split(uris, u, " "); print u[1]; done = 1
                    }
                    types = ""; uris = ""; suites = ""
                }
                /^[ \t]*#/ { next }
                /^[ \t]*$/ { flush(); next }
                tolower($1) == "types:"  { $1 = ""; types = $0 }
                tolower($1) == "uris:"   { $1 = ""; uris = $0 }
                tolower($1) == "suites:" { $1 = ""; suites = $0 }
                END { flush() }' "$f" | sed 's/^ *//')"
        else
            uri="$(sed -n -E "s/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]]+${SUITE}[[:space:]].*/\2/p" "$f" | head -n1)"
        fi
        if [[ $uri =~ ^(https?|ftp|file):/ ]]; then echo "${uri%/}"; return 0; fi
    done
    echo "http://deb.debian.org/debian"
}
MIRROR="${ORRERY_DEBIAN_MIRROR:-$(detect_mirror)}"

# ---------------------------------------------------------------- temp root + cleanup
# Remove a build directory, never while a mount is left below it (debootstrap
# mounts /proc and /sys in the target while it works; a killed one may leave them).
remove_build_dir() {
    local dir="$1" m
    [[ -d $dir && ! -L $dir ]] || return 0
    for m in proc sys dev/pts dev; do
        if mountpoint -q "$dir/rootfs/$m" 2>/dev/null; then
            umount "$dir/rootfs/$m" 2>/dev/null || umount -l "$dir/rootfs/$m" || true
        fi
    done
    if awk -v w="$dir/" 'index($2 "/", w) == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
        log "WARNING: something is still mounted under $dir, not removing it"
        return 1
    fi
    rm -rf --one-file-system "$dir"
}
# We hold the build lock, so any other build directory was left by a killed build.
for stale in "$TMPBASE"/orrery-systemd.*; do
    if [[ -d $stale && ! -L $stale ]]; then
        log "removing stale build directory $stale"
        remove_build_dir "$stale" || true
    fi
done
WORK="$(mktemp -d "$TMPBASE/orrery-systemd.XXXXXXXX")"
ROOT="$WORK/rootfs"
# shellcheck disable=SC2317,SC2329  # called from the EXIT trap
cleanup() {
    local rc=$?
    set +e
    [[ -n ${WORK:-} ]] && remove_build_dir "$WORK"
    if [[ $rc != 0 ]]; then log "build FAILED (exit $rc); $IMAGE was not (re)built"; fi
    exit "$rc"
}
# debootstrap runs in its own process group, so that a signal to this script
# stops it and its children at once.
CHILD=
run_step() {
    local rc=0
    setsid "$@" </dev/null &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=
    return "$rc"
}
# shellcheck disable=SC2317,SC2329  # called from the signal traps
on_signal() {
    trap - INT TERM HUP
    log "interrupted, stopping the build"
    if [[ -n ${CHILD:-} ]]; then
        kill -TERM -- "-$CHILD" 2>/dev/null || true
        wait "$CHILD" 2>/dev/null || true
        sleep 1
        kill -KILL -- "-$CHILD" 2>/dev/null || true
    fi
    exit "$1"
}
trap cleanup EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap 'on_signal 129' HUP

OLD_ID="$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"

START=$SECONDS
log "building $IMAGE (suite $SUITE, mirror $MIRROR, temp root $ROOT)"

# ---------------------------------------------------------------- 1. debootstrap
log "debootstrap --variant=minbase --include=$DEB_PACKAGES $SUITE"
if ! run_step debootstrap --variant=minbase --include="$DEB_PACKAGES" "$SUITE" "$ROOT" "$MIRROR" >&2; then
    [[ -f $ROOT/debootstrap/debootstrap.log ]] && tail -n 30 "$ROOT/debootstrap/debootstrap.log" >&2
    die "debootstrap failed (mirror $MIRROR; override with ORRERY_DEBIAN_MIRROR)"
fi
log "debootstrap done after $((SECONDS - START)) s"
[[ -x $ROOT/lib/systemd/systemd ]] || die "/lib/systemd/systemd is missing from the root"

# ---------------------------------------------------------------- 2. make it boot in a container
# The host's CA bundle (the mirror or registries may sit behind a TLS proxy whose CA only the
# host bundle has).
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || die "host CA bundle /etc/ssl/certs/ca-certificates.crt not found"
install -m 0644 /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"

# Units that make no sense in a container, or that could touch the host through
# --network host (network configuration, DNS, clock, sysctls), or that would wait for a
# terminal. A mask is a link to /dev/null in /etc (a missing unit may be masked too).
MASKED=(
    getty@.service serial-getty@.service console-getty.service container-getty@.service
    getty-static.service getty.target
    systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket
    systemd-udev-trigger.service systemd-udev-settle.service
    systemd-networkd.service systemd-networkd.socket systemd-networkd-wait-online.service
    systemd-resolved.service systemd-timesyncd.service systemd-time-wait-sync.service
    systemd-sysctl.service systemd-modules-load.service kmod-static-nodes.service
    systemd-firstboot.service systemd-hwdb-update.service systemd-remount-fs.service
    systemd-random-seed.service systemd-pstore.service systemd-binfmt.service
    proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount
    sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount sys-fs-fuse-connections.mount
    dev-hugepages.mount dev-mqueue.mount
    apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer
)
for u in "${MASKED[@]}"; do
    ln -sfn /dev/null "$ROOT/etc/systemd/system/$u"
done
log "masked ${#MASKED[@]} units"

# Each container gets its own machine id at boot: an empty /etc/machine-id makes systemd
# generate one (and dbus reads the same file).
: >"$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id"
mkdir -p "$ROOT/var/lib/dbus"
ln -sfn /etc/machine-id "$ROOT/var/lib/dbus/machine-id"

# systemctl right after `docker run -d`: wait for PID 1's socket instead of failing.
cat >"$ROOT/usr/local/bin/systemctl" <<'SHIM'
#!/bin/sh
# Test image only (tests/images/systemd.sh): wait until systemd, PID 1, has made its control
# socket, so that `docker exec C systemctl ...` right after `docker run -d` does not fail.
if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
    i=0
    while [ ! -S /run/systemd/private ] && [ "$i" -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
fi
exec /bin/systemctl "$@"
SHIM
chmod 0755 "$ROOT/usr/local/bin/systemctl"

# Journal in /run (volatile): nothing to keep between containers, and no /var/log growth.
mkdir -p "$ROOT/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=64M\n' >"$ROOT/etc/systemd/journald.conf.d/orrery-test.conf"
# Boot to multi-user (no graphical target, no rescue shell waiting for a console).
ln -sfn /lib/systemd/system/multi-user.target "$ROOT/etc/systemd/system/default.target"
# No fstab entries: the container's file systems are Docker's.
: >"$ROOT/etc/fstab"

# ---------------------------------------------------------------- 3. slim down
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb \
       "$ROOT"/var/log/journal "$ROOT/debootstrap" \
       "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/*
find "$ROOT/var/log" -type f -delete 2>/dev/null || true
find "$ROOT/usr/share/doc" -mindepth 1 -type f ! -name copyright -delete 2>/dev/null || true
find "$ROOT/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
: >"$ROOT/etc/resolv.conf"   # Docker provides its own
echo "orrery-systemd" >"$ROOT/etc/hostname"

# ---------------------------------------------------------------- 4. docker import
# `docker import --change` knows no STOPSIGNAL: import the root under a temporary tag, then
# add the settings with a one-line-per-setting Dockerfile (the legacy builder needs no
# registry when the base image is local).
ROOTFS_TAG="$REPO:$HASH-rootfs"
log "importing into Docker as $ROOTFS_TAG"
tar --numeric-owner -C "$ROOT" \
    --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' --exclude='./run/*' \
    -c . \
  | docker import --message "orrery systemd test image root, recipe $HASH" - "$ROOTFS_TAG" >/dev/null \
  || die "docker import failed"
log "adding the container settings: $IMAGE"
printf '%s\n' \
    "FROM $ROOTFS_TAG" \
    "ENV container=docker LANG=C.UTF-8" \
    "STOPSIGNAL SIGRTMIN+3" \
    'CMD ["/lib/systemd/systemd"]' \
    "LABEL org.orrery.recipe-hash=$HASH" \
  | DOCKER_BUILDKIT=0 docker build --quiet --tag "$IMAGE" - >/dev/null 2>&1 \
  || { docker rmi "$ROOTFS_TAG" >/dev/null 2>&1 || true; die "docker build (the settings layer) failed"; }
docker rmi "$ROOTFS_TAG" >/dev/null 2>&1 || true   # only the tag goes: $IMAGE is built on it

NEW_ID="$(docker image inspect --format '{{.Id}}' "$IMAGE")"
if [[ -n $OLD_ID && $OLD_ID != "$NEW_ID" ]]; then
    if docker rmi "$OLD_ID" >/dev/null 2>&1; then log "removed the replaced image ${OLD_ID#sha256:}"; fi
fi
log "built $IMAGE in $((SECONDS - START)) s ($(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
finish
exit 0
}
