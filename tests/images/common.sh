# shellcheck shell=bash
# The steps tests/images/build.sh and tests/images/systemd.sh share: logging, arguments,
# the recipe hash's checks, Docker and the cache, the build lock, debootstrap and the Debian
# mirror, the temporary root, its cleanup and the signal handling, the import's epilogue.
# Sourced by both scripts, never run on its own; it is part of both recipe hashes, so a
# change here rebuilds both images. It only defines functions (bash reads a sourced file
# whole before running any of it), so editing it during a build cannot derail the build.
#
# The sourcing script sets, before `source`:
#   REPO          image repository (orrery-singleuser, orrery-systemd); also names the lock,
#                 $TMPBASE/$REPO-build.lock, and the build directories, $TMPBASE/$REPO.XXXXXXXX
#   SUITE         Debian suite for debootstrap and detect_mirror (bookworm)
#   DEB_PACKAGES  debootstrap's --include list
#   BUILD_MOUNTS  mount points, relative to the root, to unmount before a build directory is
#                 removed (array, in unmount order)
#   HERE, SELF    the script's directory and path (log/die name it, --help prints its header)
# and defines recipe_files (the recipe's files, relative to $HERE, one a line, sorted bytewise).
#
# Then, in this order: parse_args "$@"; use_recipe_hash (sets HASH and IMAGE; --hash stops
# here); check_cache (a hit prints the reference and exits); prepare_build WHAT (root check,
# lock, debootstrap, sets TMPBASE and MIRROR); make_build_dir (sets WORK and ROOT, installs
# the traps, sets START); debootstrap_root; the image's own steps; finish_build.
# shellcheck disable=SC2154  # REPO, SUITE, DEB_PACKAGES, BUILD_MOUNTS, HERE, SELF: set by the sourcing script

log() { printf '[%s %3ds] %s\n' "${SELF##*/}" "$SECONDS" "$*" >&2; }
die() { printf '[%s %3ds] ERROR: %s\n' "${SELF##*/}" "$SECONDS" "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$SELF"; }

parse_args() {
    local arg
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
}

# ---------------------------------------------------------------- recipe hash
# sha256 over "sha256sum"-style lines (content hash + path relative to tests/images) of the
# files recipe_files lists, truncated to 16 hex chars.
recipe_hash() {
    local f
    (cd "$HERE" && recipe_files | while IFS= read -r f; do sha256sum -- "$f"; done) \
        | sha256sum | cut -c1-16
}
use_recipe_hash() {
    HASH="$(recipe_hash)"
    [[ "$HASH" =~ ^[0-9a-f]{16}$ ]] || die "could not compute the recipe hash"
    if [[ $HASH_ONLY == 1 ]]; then echo "$HASH"; exit 0; fi
    IMAGE="$REPO:$HASH"
}

# ---------------------------------------------------------------- docker + cache
image_exists() { docker image inspect "$IMAGE" >/dev/null 2>&1; }
finish() { # tag :latest and print the reference
    docker tag "$IMAGE" "$REPO:latest" >/dev/null || die "docker tag $IMAGE $REPO:latest failed"
    echo "$IMAGE"
}
check_cache() {
    command -v docker >/dev/null 2>&1 || die "docker CLI not found"
    docker info >/dev/null 2>&1 \
        || die "cannot talk to the Docker engine (is dockerd running? try: dockerd >/var/log/dockerd.log 2>&1 &)"
    if [[ $FORCE == 0 ]] && image_exists; then
        log "cache hit: $IMAGE already exists"
        finish
        exit 0
    fi
}

# ---------------------------------------------------------------- build prerequisites
# prepare_build WHAT: WHAT is what needs root, for the message ("debootstrap + chroot").
prepare_build() {
    [[ $(id -u) == 0 ]] || die "building needs root ($1); $IMAGE is not built yet"

    TMPBASE="${ORRERY_BUILD_TMPDIR:-/var/tmp}"
    mkdir -p "$TMPBASE"

    # Serialise concurrent builds (e.g. parallel test runs); re-check the cache
    # once we hold the lock, another process may just have built the image.
    LOCK="$TMPBASE/$REPO-build.lock"
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

    MIRROR="${ORRERY_DEBIAN_MIRROR:-$(detect_mirror)}"
}

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

# ---------------------------------------------------------------- temp root + cleanup
# Remove a build directory: unmount $BUILD_MOUNTS below its root first, and never remove
# anything while a mount is left below it (rm stays on one file system too).
remove_build_dir() {
    local dir="$1" m
    [[ -d $dir && ! -L $dir ]] || return 0
    for m in "${BUILD_MOUNTS[@]}"; do
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
# shellcheck disable=SC2317,SC2329  # called from the EXIT trap
cleanup() {
    local rc=$?
    set +e
    [[ -n ${WORK:-} ]] && remove_build_dir "$WORK"
    if [[ $rc != 0 ]]; then log "build FAILED (exit $rc); $IMAGE was not (re)built"; fi
    exit "$rc"
}
# Long steps (debootstrap, pip) run in their own process group via run_step,
# so that a signal to the script (Ctrl-C, timeout(1), a test harness) stops
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
make_build_dir() {
    local stale
    # We hold the build lock, so any other build directory was left by a build
    # that was killed before its trap could run (e.g. SIGKILL).
    for stale in "$TMPBASE/$REPO".*; do
        if [[ -d $stale && ! -L $stale ]]; then
            log "removing stale build directory $stale"
            remove_build_dir "$stale" || true
        fi
    done
    WORK="$(mktemp -d "$TMPBASE/$REPO.XXXXXXXX")"
    ROOT="$WORK/rootfs"
    trap cleanup EXIT
    trap 'on_signal 130' INT
    trap 'on_signal 143' TERM
    trap 'on_signal 129' HUP

    # With --force the old image of the same tag becomes dangling once replaced;
    # remember it so it can be removed after a successful import.
    OLD_ID="$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"

    START=$SECONDS
    log "building $IMAGE (suite $SUITE, mirror $MIRROR, temp root $ROOT)"
}

# ---------------------------------------------------------------- debootstrap
debootstrap_root() {
    log "debootstrap --variant=minbase --include=$DEB_PACKAGES $SUITE"
    if ! run_step debootstrap --variant=minbase --include="$DEB_PACKAGES" "$SUITE" "$ROOT" "$MIRROR" >&2; then
        [[ -f $ROOT/debootstrap/debootstrap.log ]] && tail -n 30 "$ROOT/debootstrap/debootstrap.log" >&2
        die "debootstrap failed (mirror $MIRROR; override with ORRERY_DEBIAN_MIRROR)"
    fi
    log "debootstrap done after $((SECONDS - START)) s"
}

# ---------------------------------------------------------------- after the import
# Remove the image $IMAGE replaced (--force), log, tag :latest and print the reference.
finish_build() {
    local new_id
    new_id="$(docker image inspect --format '{{.Id}}' "$IMAGE")"
    if [[ -n $OLD_ID && $OLD_ID != "$new_id" ]]; then
        if docker rmi "$OLD_ID" >/dev/null 2>&1; then log "removed the replaced image ${OLD_ID#sha256:}"; fi
    fi
    log "built $IMAGE in $((SECONDS - START)) s ($(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
    finish
}
