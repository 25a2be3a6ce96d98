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
DEB_PACKAGES=python3,python3-venv,ca-certificates,tini,git
# Mounts below the root to undo before a build directory is removed (step 3 mounts /proc).
BUILD_MOUNTS=(proc)
NB_USER=jovyan
NB_UID=1000
NB_GID=100

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
SU="$HERE/singleuser"

# Logging, arguments, cache, lock, temp root and cleanup: shared with systemd.sh.
# shellcheck source=SCRIPTDIR/common.sh
source "$HERE/common.sh"

parse_args "$@"

# ---------------------------------------------------------------- recipe hash
# Every file that shapes the image is an input: this script, common.sh and everything in
# singleuser/ (requirements.txt, constraints.txt, start.sh, ...). The hash is
# sha256 over "sha256sum"-style lines (content hash + path relative to
# tests/images, sorted bytewise), truncated to 16 hex chars (recipe_hash, common.sh).
recipe_files() {
    (cd "$HERE" && { echo "build.sh"; echo "common.sh"; find singleuser -type f -print; } | LC_ALL=C sort)
}

[[ -f "$SU/requirements.txt" ]] || die "missing $SU/requirements.txt"
[[ -f "$SU/start.sh" ]] || die "missing $SU/start.sh"
use_recipe_hash

# ---------------------------------------------------------------- docker + cache, build prerequisites
check_cache
prepare_build "debootstrap + chroot"

# ---------------------------------------------------------------- temp root + cleanup
make_build_dir

# ---------------------------------------------------------------- 1. debootstrap
debootstrap_root

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

finish_build
exit 0
}
