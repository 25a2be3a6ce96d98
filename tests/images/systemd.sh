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
# Mounts below the root to undo before a build directory is removed (debootstrap mounts
# /proc and /sys in the target while it works; a killed one may leave them).
BUILD_MOUNTS=(proc sys dev/pts dev)

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"

# Logging, arguments, cache, lock, temp root and cleanup: shared with build.sh.
# shellcheck source=SCRIPTDIR/common.sh
source "$HERE/common.sh"

parse_args "$@"

# ---------------------------------------------------------------- recipe hash
# The recipe is this script and common.sh: sha256 over their "sha256sum" lines (content
# hash + name, sorted bytewise), truncated to 16 hex chars -- recipe_hash in common.sh,
# the same scheme as build.sh.
recipe_files() {
    printf '%s\n' "$(basename "$SELF")" common.sh | LC_ALL=C sort
}
use_recipe_hash

# ---------------------------------------------------------------- docker + cache, build prerequisites
check_cache
prepare_build "debootstrap"

# ---------------------------------------------------------------- temp root + cleanup
make_build_dir

# ---------------------------------------------------------------- 1. debootstrap
debootstrap_root
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

finish_build
exit 0
}
