#!/bin/sh
# Build a Debian package of Orrery with nothing but dpkg-deb:
#
#   packaging/build-deb.sh            # runs `cargo build --release --locked` first
#   ORRERY_BINARY=target/debug/orrery packaging/build-deb.sh   # package this binary instead
#
# Output: target/debian/orrery_<version>_<arch>.deb (or in $ORRERY_DEB_OUT), the version taken
# from Cargo.toml.
#
# The package holds
#   /usr/bin/orrery                     the daemon and CLI
#   /lib/systemd/system/orrery.service  systemd/orrery.service, ExecStart pointed at /usr/bin
#   /etc/orrery/config.toml             packaging/config.toml, a conffile (kept on upgrade)
#   /usr/share/doc/orrery/              README.md and the commented orrery.example.toml
# Installing it enables and starts the service when systemd runs (an upgrade restarts it).
# `apt remove orrery` stops the service, removes this hub's containers (user servers, kernels;
# `orrery cleanup`, best effort) and the program, and keeps /etc/orrery (config) and
# /var/lib/orrery (users, tokens, servers). `apt purge orrery` also deletes /etc/orrery and
# /var/lib/orrery. Neither ever deletes the users' home volumes or directories.
#
# Environment:
#   ORRERY_BINARY          package this binary instead of building target/release/orrery
#                          (a relative path: from the current directory, else from the checkout)
#   ORRERY_DEB_OUT         the directory the .deb is written to (default: target/debian)
#   ORRERY_DEB_COMPRESSION xz (default), gzip, zstd or none (gzip is much faster to build)
#   ORRERY_DEB_ARCH        Debian architecture (default: dpkg --print-architecture)
#   ORRERY_DEB_MAINTAINER  the Maintainer field (default: "Orrery maintainers <root@localhost>")
set -eu
umask 022

caller=$(pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

die() { printf 'build-deb: error: %s\n' "$*" >&2; exit 1; }

compression=${ORRERY_DEB_COMPRESSION:-xz}
case $compression in
    xz | gzip | zstd | none) ;;
    *) die "ORRERY_DEB_COMPRESSION=$compression: use xz, gzip, zstd or none" ;;
esac
out_dir=${ORRERY_DEB_OUT:-target/debian}
case $out_dir in /*) ;; *) [ -z "${ORRERY_DEB_OUT:-}" ] || out_dir=$caller/$out_dir ;; esac
say() { printf 'build-deb: %s\n' "$*"; }

command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found (apt-get install dpkg)"

# Version: the [package] version of Cargo.toml; a pre-release "-rc.1" sorts before the release
# in Debian as "~rc.1".
version=$(sed -n '/^\[package\]/,/^\[/{s/^version[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p;}' Cargo.toml | head -n 1)
[ -n "$version" ] || die "no version in the [package] section of Cargo.toml"
deb_version=$(printf '%s' "$version" | tr '-' '~')

arch=${ORRERY_DEB_ARCH:-$(dpkg --print-architecture 2>/dev/null || true)}
[ -n "$arch" ] || die "cannot tell the Debian architecture; set ORRERY_DEB_ARCH (e.g. amd64)"
maintainer=${ORRERY_DEB_MAINTAINER:-Orrery maintainers <root@localhost>}

if [ -n "${ORRERY_BINARY:-}" ]; then
    binary=$ORRERY_BINARY
    case $binary in /*) ;; *) [ ! -e "$caller/$binary" ] || binary=$caller/$binary ;; esac
    say "packaging $binary (ORRERY_BINARY)"
else
    say "cargo build --release --locked"
    cargo build --release --locked
    binary=target/release/orrery
fi
if [ ! -f "$binary" ] || [ ! -x "$binary" ]; then die "$binary is not an executable file"; fi
built_version=$("$binary" version 2>/dev/null) || die "$binary does not run on this machine"
[ "$built_version" = "orrery $version" ] \
    || die "$binary says \"$built_version\" but Cargo.toml says $version; rebuild it"

stage=$out_dir/orrery_${deb_version}_$arch
deb=$out_dir/orrery_${deb_version}_$arch.deb
rm -rf "$stage"
mkdir -p "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/etc/orrery" \
    "$stage/usr/share/doc/orrery"

# --- files ------------------------------------------------------------------------------------
install -m 0755 "$binary" "$stage/usr/bin/orrery"
# One unit file for both installers: only the binary's path differs.
grep -q '^ExecStart=/usr/local/bin/orrery ' systemd/orrery.service \
    || die "systemd/orrery.service has no 'ExecStart=/usr/local/bin/orrery ' line to adjust"
sed 's#^ExecStart=/usr/local/bin/orrery #ExecStart=/usr/bin/orrery #' systemd/orrery.service \
    > "$stage/lib/systemd/system/orrery.service"
[ "$(diff systemd/orrery.service "$stage/lib/systemd/system/orrery.service" | grep -c '^[<>]')" = 2 ] \
    || die "the packaged unit should differ from systemd/orrery.service in the ExecStart line only"
chmod 0644 "$stage/lib/systemd/system/orrery.service"
# The config may come to hold service tokens: readable by root only, as `orrery config` writes it.
install -m 0600 packaging/config.toml "$stage/etc/orrery/config.toml"
install -m 0644 config/orrery.example.toml "$stage/usr/share/doc/orrery/orrery.example.toml"
[ -f README.md ] && install -m 0644 README.md "$stage/usr/share/doc/orrery/README.md"
if [ -f LICENSE ]; then
    install -m 0644 LICENSE "$stage/usr/share/doc/orrery/copyright"
fi

# --- metadata ---------------------------------------------------------------------------------
printf '/etc/orrery/config.toml\n' > "$stage/DEBIAN/conffiles"

glibc=$(grep -ao 'GLIBC_2\.[0-9.]*' "$binary" | sed 's/^GLIBC_//' | sort -uV | tail -n 1)
depends="libc6${glibc:+ (>= $glibc)}, libgcc-s1"
installed_size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)

cat > "$stage/DEBIAN/control" <<EOF
Package: orrery
Version: $deb_version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $depends
Recommends: docker.io | docker-ce
Section: net
Priority: optional
Description: JupyterHub-compatible hub for a class or a team, in one daemon
 Orrery turns a Linux machine into a JupyterHub: users and logins, the
 JupyterHub REST API and OAuth provider, the pages, and the proxy to each
 user's server, in one process run by systemd (orrery.service).
 .
 Configure it with "orrery config set KEY VALUE"; see
 /usr/share/doc/orrery/README.md.
EOF

cat > "$stage/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# Enable orrery on a first install; then start it (first install, or a re-install after
# `apt remove`) or restart it (upgrade) when it is enabled, as Debian's deb-systemd-invoke does.
set -e
if [ "$1" = configure ]; then
    mkdir -p /var/lib/orrery
    chmod 0700 /var/lib/orrery
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        if [ -z "$2" ]; then
            systemctl enable orrery.service
        fi
        if systemctl is-enabled --quiet orrery.service; then
            if [ -z "$2" ] || ! systemctl is-active --quiet orrery.service; then
                systemctl start orrery.service || \
                    echo "orrery did not start; see: journalctl -u orrery -n 50" >&2
            else
                systemctl restart orrery.service || \
                    echo "orrery did not restart; see: journalctl -u orrery -n 50" >&2
            fi
        else
            echo "orrery.service is disabled: not starting it (systemctl enable --now orrery)"
        fi
    else
        echo "systemd is not running: start orrery yourself (orrery --config /etc/orrery/config.toml serve)"
    fi
fi
exit 0
EOF

cat > "$stage/DEBIAN/prerm" <<'EOF'
#!/bin/sh
# On removal: stop orrery, then remove this hub's containers (user servers, kernels) while the
# program, config and state are still there; the users' home volumes are kept. An upgrade
# restarts the service from postinst instead.
set -e
case "$1" in
    remove)
        if [ -d /run/systemd/system ]; then
            systemctl stop orrery.service || true
        fi
        if [ -x /usr/bin/orrery ] && [ -e /etc/orrery/config.toml ]; then
            /usr/bin/orrery --config /etc/orrery/config.toml cleanup </dev/null || \
                echo "orrery: could not remove this hub's containers (above); see docker ps -a" >&2
        fi
        ;;
    deconfigure)
        if [ -d /run/systemd/system ]; then
            systemctl stop orrery.service || true
        fi
        ;;
esac
exit 0
EOF

cat > "$stage/DEBIAN/postrm" <<'EOF'
#!/bin/sh
# remove: keep /etc/orrery (config) and /var/lib/orrery (users, tokens, servers).
# purge: delete both. Never the users' home volumes or directories.
set -e
case "$1" in
    remove)
        if [ -d /run/systemd/system ]; then
            systemctl daemon-reload || true
        fi
        echo "orrery: kept /etc/orrery and /var/lib/orrery (apt purge orrery deletes them) and the users' home volumes"
        ;;
    purge)
        rm -f /etc/systemd/system/multi-user.target.wants/orrery.service
        # dpkg removed the conffile; the rest (the lock file `orrery config` keeps, backups)
        # and the state go now.
        rm -rf /etc/orrery /var/lib/orrery
        if [ -d /run/systemd/system ]; then
            systemctl daemon-reload || true
            systemctl reset-failed orrery.service >/dev/null 2>&1 || true
        fi
        echo "orrery: deleted /etc/orrery and /var/lib/orrery; the users' home volumes are kept (docker volume ls)"
        ;;
esac
exit 0
EOF
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"

dpkg-deb --root-owner-group -Z"$compression" --build "$stage" "$deb" >/dev/null
rm -rf "$stage"
say "built $deb"
