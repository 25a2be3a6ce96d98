#!/usr/bin/env bash
# Build the orrery single-user test image offline (no container registry needed)
# and print its reference (orrery-singleuser:<recipe-hash>) on stdout.
# All progress goes to stderr. See tests/images/README.md.
#
# Usage: tests/images/build.sh [--force] [--hash] [--help]
#   --force   rebuild even if orrery-singleuser:<hash> already exists
#   --hash    print the recipe hash and exit (no Docker needed)
#   --help    show this help
# Environment:
#   ORRERY_DEBIAN_MIRROR   Debian mirror for debootstrap
#                          (default: the one apt uses on this machine, else http://deb.debian.org/debian)
#   ORRERY_BUILD_TMPDIR    where the temporary root file system goes (default /var/tmp)
#   PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_TRUSTED_HOST, PIP_DEFAULT_TIMEOUT,
#   http_proxy, https_proxy, no_proxy (and upper-case forms): passed to pip in the chroot.
# Needs: root (debootstrap, chroot), a running Docker engine, network to a Debian
# mirror and to PyPI (or the index the host's pip is configured with).
set -euo pipefail
# The whole body is one brace group, so bash parses it completely before
# running it: editing or replacing this file during a build cannot derail it.
{

REPO=orrery-singleuser
SUITE=bookworm
DEB_PACKAGES=python3,python3-venv,ca-certificates,tini
NB_USER=jovyan
NB_UID=1000
NB_GID=100

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
SU="$HERE/singleuser"

log() { printf '[build.sh %3ds] %s\n' "$SECONDS" "$*" >&2; }
die() { printf '[build.sh %3ds] ERROR: %s\n' "$SECONDS" "$*" >&2; exit 1; }
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
# Every file that shapes the image is an input: this script and everything in
# singleuser/ (requirements.txt, constraints.txt, start.sh, ...). The hash is
# sha256 over "sha256sum"-style lines (content hash + path relative to
# tests/images, sorted bytewise), truncated to 16 hex chars.
recipe_files() {
    (cd "$HERE" && { echo "build.sh"; find singleuser -type f -print; } | LC_ALL=C sort)
}
recipe_hash() {
    local f
    (cd "$HERE" && recipe_files | while IFS= read -r f; do sha256sum -- "$f"; done) \
        | sha256sum | cut -c1-16
}

[[ -f "$SU/requirements.txt" ]] || die "missing $SU/requirements.txt"
[[ -f "$SU/start.sh" ]] || die "missing $SU/start.sh"
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
[[ $(id -u) == 0 ]] || die "building needs root (debootstrap + chroot); $IMAGE is not built yet"

TMPBASE="${ORRERY_BUILD_TMPDIR:-/var/tmp}"
mkdir -p "$TMPBASE"

# Serialise concurrent builds (e.g. parallel test runs); re-check the cache
# once we hold the lock, another process may just have built the image.
LOCK="$TMPBASE/orrery-singleuser-build.lock"
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
# Remove a build directory: unmount the chroot's /proc first, and never
# remove anything while a mount is left below it (rm stays on one file system too).
remove_build_dir() {
    local dir="$1"
    [[ -d $dir && ! -L $dir ]] || return 0
    if mountpoint -q "$dir/rootfs/proc" 2>/dev/null; then
        umount "$dir/rootfs/proc" 2>/dev/null || umount -l "$dir/rootfs/proc"
    fi
    if awk -v w="$dir/" 'index($2 "/", w) == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
        log "WARNING: something is still mounted under $dir, not removing it"
        return 1
    fi
    rm -rf --one-file-system "$dir"
}
# We hold the build lock, so any other build directory was left by a build
# that was killed before its trap could run (e.g. SIGKILL).
for stale in "$TMPBASE"/orrery-singleuser.*; do
    if [[ -d $stale && ! -L $stale ]]; then
        log "removing stale build directory $stale"
        remove_build_dir "$stale" || true
    fi
done
WORK="$(mktemp -d "$TMPBASE/orrery-singleuser.XXXXXXXX")"
ROOT="$WORK/rootfs"
# shellcheck disable=SC2329  # called from the EXIT trap
cleanup() {
    local rc=$?
    set +e
    [[ -n ${WORK:-} ]] && remove_build_dir "$WORK"
    if [[ $rc != 0 ]]; then log "build FAILED (exit $rc); $IMAGE was not (re)built"; fi
    exit "$rc"
}
# Long steps (debootstrap, pip) run in their own process group via run_step,
# so that a signal to this script (Ctrl-C, timeout(1), a test harness) stops
# them and their children at once instead of after they finish.
CHILD=
run_step() {
    local rc=0
    setsid "$@" </dev/null &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=
    return "$rc"
}
# shellcheck disable=SC2329  # called from the signal traps
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

# With --force the old image of the same tag becomes dangling once replaced;
# remember it so it can be removed after a successful import.
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

# ---------------------------------------------------------------- 2. host config into the root
# The host's CA bundle (the package registries may sit behind a TLS proxy whose
# CA only the host bundle has) -- it stays in the image.
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || die "host CA bundle /etc/ssl/certs/ca-certificates.crt not found"
install -m 0644 /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true

# The host's pip configuration, so pip in the chroot reaches the same index.
# Removed again before the image is made (it may hold credentials).
PIP_CONF_COPIES=()
copy_pip_conf() { # src dest
    if [[ -f $1 ]]; then
        mkdir -p "$(dirname "$ROOT$2")"
        cp -L "$1" "$ROOT$2"
        PIP_CONF_COPIES+=("$ROOT$2")
        log "using pip configuration $1"
    fi
}
copy_pip_conf /etc/pip.conf /etc/pip.conf
if [[ -n ${HOME:-} ]]; then
    copy_pip_conf "$HOME/.config/pip/pip.conf" /root/.config/pip/pip.conf
    copy_pip_conf "$HOME/.pip/pip.conf" /root/.pip/pip.conf
fi
[[ -n ${PIP_CONFIG_FILE:-} && -f ${PIP_CONFIG_FILE} ]] && copy_pip_conf "$PIP_CONFIG_FILE" /etc/pip.conf

CHROOT_ENV=(
    HOME=/root LANG=C.UTF-8
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_NO_INPUT=1
)
for v in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST PIP_DEFAULT_TIMEOUT PIP_RETRIES \
         http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    if [[ -n ${!v:-} ]]; then CHROOT_ENV+=("$v=${!v}"); fi
done
in_chroot() { chroot "$ROOT" /usr/bin/env -i "${CHROOT_ENV[@]}" "$@"; }

mount -t proc proc "$ROOT/proc" || die "cannot mount /proc in the chroot"

# ---------------------------------------------------------------- 3. venv + pip install
mkdir -p "$ROOT/tmp/orrery-build"
cp "$SU/requirements.txt" "$ROOT/tmp/orrery-build/requirements.txt"
PIP_ARGS=(-r /tmp/orrery-build/requirements.txt)
if [[ -f "$SU/constraints.txt" ]]; then
    cp "$SU/constraints.txt" "$ROOT/tmp/orrery-build/constraints.txt"
    PIP_ARGS+=(-c /tmp/orrery-build/constraints.txt)
fi
log "creating /opt/venv and installing $(grep -cE '^[A-Za-z0-9]' "$SU/requirements.txt") pinned packages"
in_chroot python3 -m venv /opt/venv >&2 || die "python3 -m venv /opt/venv failed in the chroot"
run_step chroot "$ROOT" /usr/bin/env -i "${CHROOT_ENV[@]}" /opt/venv/bin/pip install --no-cache-dir --progress-bar off "${PIP_ARGS[@]}" >&2 \
    || die "pip install failed in the chroot (check network to the index / the pins in $SU/requirements.txt)"
in_chroot /opt/venv/bin/python -c 'import jupyterlab, jupyter_server, ipykernel, jupyterhub' \
    || die "installed packages do not import"
in_chroot /opt/venv/bin/jupyterhub-singleuser --version >/dev/null \
    || die "jupyterhub-singleuser does not run"
log "pip install done after $((SECONDS - START)) s"

# ---------------------------------------------------------------- 4. user, start script
in_chroot getent group "$NB_GID" >/dev/null || in_chroot groupadd -g "$NB_GID" users
in_chroot useradd --create-home --home-dir "/home/$NB_USER" --shell /bin/bash \
    --uid "$NB_UID" --gid "$NB_GID" --no-user-group "$NB_USER" || die "useradd $NB_USER failed"
chown -R "$NB_UID:$NB_GID" "$ROOT/home/$NB_USER"
chmod 0755 "$ROOT/home/$NB_USER"
install -m 0755 "$SU/start.sh" "$ROOT/usr/local/bin/start-singleuser.sh"
# docker-stacks' other start command name, same behaviour here.
ln -sf start-singleuser.sh "$ROOT/usr/local/bin/start-notebook.sh"
in_chroot /usr/bin/tini --version >/dev/null || die "tini is missing from the image"
# tini is called by name from the ENTRYPOINT; make sure PATH finds it.
[[ -x $ROOT/usr/bin/tini ]] || die "/usr/bin/tini not found"

# ---------------------------------------------------------------- 5. slim down
umount "$ROOT/proc"
rm -rf "$ROOT/tmp/orrery-build" "$ROOT/root/.cache" "$ROOT/home/$NB_USER/.cache"
for f in "${PIP_CONF_COPIES[@]}"; do rm -f "$f"; done
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb \
       "$ROOT"/var/log/* "$ROOT/debootstrap" \
       "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/*
find "$ROOT/usr/share/doc" -mindepth 1 -type f ! -name copyright -delete 2>/dev/null || true
find "$ROOT/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
: >"$ROOT/etc/resolv.conf"   # Docker provides its own
echo "orrery-singleuser" >"$ROOT/etc/hostname"

# ---------------------------------------------------------------- 6. docker import
log "importing into Docker as $IMAGE"
tar --numeric-owner -C "$ROOT" \
    --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' \
    -c . \
  | docker import \
      --message "orrery single-user test image, recipe $HASH" \
      --change "ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
      --change "ENV HOME=/home/$NB_USER" \
      --change "ENV SHELL=/bin/bash" \
      --change "ENV LANG=C.UTF-8" \
      --change "ENV NB_USER=$NB_USER" \
      --change "ENV NB_UID=$NB_UID" \
      --change "ENV NB_GID=$NB_GID" \
      --change "USER $NB_UID:$NB_GID" \
      --change "WORKDIR /home/$NB_USER" \
      --change "EXPOSE 8888" \
      --change 'ENTRYPOINT ["tini", "-g", "--"]' \
      --change 'CMD ["start-singleuser.sh"]' \
      --change "LABEL org.orrery.recipe-hash=$HASH" \
      - "$IMAGE" >/dev/null \
  || die "docker import failed"

NEW_ID="$(docker image inspect --format '{{.Id}}' "$IMAGE")"
if [[ -n $OLD_ID && $OLD_ID != "$NEW_ID" ]]; then
    docker rmi "$OLD_ID" >/dev/null 2>&1 && log "removed the replaced image ${OLD_ID#sha256:}" || true
fi
log "built $IMAGE in $((SECONDS - START)) s ($(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
finish
exit 0
}
