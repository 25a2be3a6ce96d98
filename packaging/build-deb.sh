#!/bin/sh
# Build a Debian package of Orrery with nothing but dpkg-deb:
#
#   packaging/build-deb.sh            # runs `cargo build --release --locked` first
#   ORRERY_BINARY=target/debug/orrery packaging/build-deb.sh   # package this binary instead
#
# Output: target/debian/orrery_<version>_<arch>.deb, the version taken from Cargo.toml.
#
# The package holds
#   /usr/bin/orrery                     the daemon and CLI
#   /lib/systemd/system/orrery.service  systemd/orrery.service, ExecStart pointed at /usr/bin
#   /etc/orrery/config.toml             packaging/config.toml, a conffile (kept on upgrade)
#   /usr/share/doc/orrery/              README.md and the commented orrery.example.toml
# Installing it enables and starts the service when systemd runs; removing it stops the
# service; nothing ever deletes /var/lib/orrery (users, tokens, servers), not even a purge.
#
# Environment:
#   ORRERY_BINARY          package this binary instead of building target/release/orrery
#   ORRERY_DEB_ARCH        Debian architecture (default: dpkg --print-architecture)
#   ORRERY_DEB_MAINTAINER  the Maintainer field (default: "Orrery maintainers <root@localhost>")
set -eu
umask 022

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

die() { printf 'build-deb: error: %s\n' "$*" >&2; exit 1; }
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

out_dir=target/debian
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
sed 's#/usr/local/bin/orrery#/usr/bin/orrery#g' systemd/orrery.service \
    > "$stage/lib/systemd/system/orrery.service"
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
# Enable and start orrery on a first install; restart it on an upgrade.
set -e
if [ "$1" = configure ]; then
    mkdir -p /var/lib/orrery
    chmod 0700 /var/lib/orrery
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        if [ -z "$2" ]; then
            systemctl enable orrery.service
            systemctl start orrery.service || \
                echo "orrery did not start; see: journalctl -u orrery -n 50" >&2
        else
            systemctl try-restart orrery.service || true
        fi
    else
        echo "systemd is not running: start orrery yourself (orrery --config /etc/orrery/config.toml serve)"
    fi
fi
exit 0
EOF

cat > "$stage/DEBIAN/prerm" <<'EOF'
#!/bin/sh
# Stop orrery when the package is removed (an upgrade restarts it from postinst instead).
set -e
case "$1" in
    remove|deconfigure)
        if [ -d /run/systemd/system ]; then
            systemctl stop orrery.service || true
        fi
        ;;
esac
exit 0
EOF

cat > "$stage/DEBIAN/postrm" <<'EOF'
#!/bin/sh
# Never deletes /var/lib/orrery: it holds the users, their tokens and servers.
set -e
case "$1" in
    remove|purge)
        if [ "$1" = purge ]; then
            rm -f /etc/systemd/system/multi-user.target.wants/orrery.service
            # The lock file `orrery config` keeps next to the config (dpkg removes the conffile).
            rm -f /etc/orrery/config.toml.lock
            rmdir /etc/orrery 2>/dev/null || true
        fi
        if [ -d /run/systemd/system ]; then
            systemctl daemon-reload || true
        fi
        if [ -d /var/lib/orrery ]; then
            echo "orrery: the state in /var/lib/orrery is kept; delete it yourself if it is no longer needed"
        fi
        ;;
esac
exit 0
EOF
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"

dpkg-deb --root-owner-group --build "$stage" "$deb" >/dev/null
rm -rf "$stage"
say "built $deb"
