#!/bin/sh
# Orrery installer for a fresh Debian 12 or Ubuntu 22.04+ machine with systemd; POSIX sh (dash).
#
#   curl -fsSL URL-OF-THIS-SCRIPT | sudo sh -s -- --admin alice --binary URL-OR-PATH
#   sudo sh bootstrap/bootstrap.sh --admin alice:a-long-password --source .
#
# Options and what it does: sh bootstrap.sh --help (the usage() text below).
# Everything runs from main() at the very end, so a download cut short runs nothing.
set -u

usage() {
cat <<'ORRERY_USAGE_EOF'
Install or upgrade Orrery on this machine (Debian 12+, Ubuntu 22.04+, with systemd).

  curl -fsSL URL-OF-THIS-SCRIPT | sudo sh -s -- --admin alice --binary URL-OR-PATH
  sudo sh bootstrap/bootstrap.sh --admin alice:a-long-password --source .

There is no release download server yet: say where the orrery binary comes from, either
  --binary PATH_OR_URL   a built orrery binary: a local file, or an http(s) URL fetched with curl
  --source DIR           an Orrery checkout, built here with `cargo build --release --locked`
                         (as the sudo user when they own DIR); needs Rust installed
Re-running the installer upgrades in place: it replaces the binary and the systemd unit and
restarts the service; /etc/orrery/config.toml and /var/lib/orrery are never overwritten.
Without --binary or --source a re-run keeps the installed binary.

Options (each also as an environment variable):
  --admin NAME[:PASSWORD]  make NAME an admin (users.admin; repeatable); with a password, also
                           create the user with that password, or reset it if NAME exists
                           ORRERY_ADMIN="alice bob:pw" (space-separated)
  --binary PATH_OR_URL     ORRERY_BINARY
  --source DIR             ORRERY_SOURCE
  --no-docker              do not install docker.io (ORRERY_NO_DOCKER=1)
  --skip-os-check          install on another Debian-like system (ORRERY_SKIP_OS_CHECK=1)
  --dry-run                print the commands, change nothing (ORRERY_DRY_RUN=1)
  --print-config           print the config.toml a first install writes, and exit
  --print-unit             print the systemd unit this installs, and exit
  -h, --help               this help

Steps (each is printed): check root, the OS and systemd; apt-get install docker.io
ca-certificates curl; install the binary as /usr/local/bin/orrery; write
/etc/orrery/config.toml if absent; add the admins to users.admin; install
/etc/systemd/system/orrery.service; enable and (re)start it; wait up to 60 s for
http://127.0.0.1/hub/api/; set the admins' passwords; run `orrery doctor`; print the URL.
ORRERY_USAGE_EOF
}

BIN=/usr/local/bin/orrery
CONFIG_DIR=/etc/orrery
CONFIG=$CONFIG_DIR/config.toml
UNIT=/etc/systemd/system/orrery.service
HEALTH_TIMEOUT=60

# ---- the files this script installs (keep in sync with the repository; see README) ----------

print_config() {
cat <<'ORRERY_CONFIG_EOF'
# Orrery configuration, written by the installer. A key not written here keeps its default;
# `orrery config show --effective` prints every setting in effect, defaults included.
#
# Change settings with the tljh-config style commands (they keep these comments, check the
# value and refuse mistakes), then apply them:
#
#   sudo orrery config set limits.memory 2G
#   sudo orrery config add-item users.admin alice
#   sudo orrery config reload        # the reload names any key that needs a restart:
#   sudo systemctl restart orrery    # listeners, state.path, base_url, logging, spawner.backend
#
# Re-running the installer never overwrites this file.

[http]
# Listen on every interface, port 80.
address = ""
port = 80

[state]
# Users, tokens and servers (back it up; see the README's "Operations").
path = "/var/lib/orrery/state"

[spawner]
# One container per user on this machine's Docker engine.
backend = "docker"

[auth.firstuse]
# Who may log in: admins (users.admin), users an admin added (`orrery users add NAME`, the
# admin page) and the names in users.allowed; each sets a password at first login. true lets
# anyone who can reach the hub create an account.
create_users = false
ORRERY_CONFIG_EOF
}

print_unit() {
cat <<'ORRERY_UNIT_EOF'
# Orrery: a JupyterHub for a class or a team, in one daemon.
#
# Installed by bootstrap/bootstrap.sh (as /etc/systemd/system/orrery.service) or by the .deb
# from packaging/build-deb.sh (as /lib/systemd/system/orrery.service, with ExecStart pointing
# at /usr/bin/orrery). Change settings with `sudo orrery config set KEY VALUE`, then
# `sudo orrery config reload` (or `systemctl reload orrery`); keys that need a restart are
# named by the reload: `systemctl restart orrery`.
#
# Logs: journalctl -u orrery

[Unit]
Description=Orrery (JupyterHub-compatible hub for a class or team)
After=network-online.target docker.service
Wants=network-online.target

[Service]
# The daemon says READY=1 once it serves, RELOADING=1/READY=1 around a SIGHUP reload and
# STOPPING=1 when it stops, and sends watchdog keep-alives from its runtime: a daemon whose
# runtime is frozen or wedged is killed and restarted (Restart=always) after WatchdogSec.
Type=notify
NotifyAccess=main
WatchdogSec=30s
ExecStart=/usr/local/bin/orrery --config /etc/orrery/config.toml serve
# SIGHUP re-reads the config file and applies what can change without a restart.
ExecReload=/bin/kill -HUP $MAINPID
Restart=always
RestartSec=2
# SIGTERM makes the daemon stop accepting connections and finish the requests in flight; long
# connections (terminals, kernels over WebSocket) must not hold a restart up for long.
TimeoutStopSec=30s
# With the Docker backend user servers live in Docker's cgroups and survive a restart of the
# daemon (they are re-adopted). With the local backend they are children of this unit and are
# stopped with it.

# /var/lib/orrery (state: sled database, control token, daemon.json) and /etc/orrery (config),
# created by systemd if missing; the state directory is private to root (0700).
StateDirectory=orrery
StateDirectoryMode=0700
ConfigurationDirectory=orrery
ConfigurationDirectoryMode=0755
WorkingDirectory=/var/lib/orrery
LimitNOFILE=65536

# Runs as root: it manages Docker (whose socket is root's in effect) and binds port 80.
# Hardening that keeps both working:
NoNewPrivileges=yes
# /usr, /boot, /efi and /etc read-only, apart from the paths below. Not "strict": the Docker
# backend will create user home directories on the host (host-path volumes).
ProtectSystem=full
ReadWritePaths=/var/lib/orrery /etc/orrery
# Not read-only: host-path home directories (a later option of the Docker backend) may live
# under /home.
ProtectHome=no
PrivateTmp=yes
# The daemon is a Docker *client* (it only talks to /run/docker.sock); it never changes sysctls,
# loads modules or writes cgroups itself.
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectHostname=yes
# No PrivateDevices= and no ProtectClock= (it implies a device allow-list): GPU sharing (NVML)
# will need /dev/nvidia*.
RestrictSUIDSGID=yes
RestrictRealtime=yes
LockPersonality=yes
SystemCallArchitectures=native
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK

[Install]
WantedBy=multi-user.target
ORRERY_UNIT_EOF
}

# ---- helpers ---------------------------------------------------------------------------------

step() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# Show a command as a shell would read it.
show() {
    printf '    $'
    for show_arg in "$@"; do
        case $show_arg in
            *[!A-Za-z0-9_./:=@%+,-]* | '') printf " '%s'" "$(printf '%s' "$show_arg" | sed "s/'/'\\\\''/g")" ;;
            *) printf ' %s' "$show_arg" ;;
        esac
    done
    printf '\n'
}

# Print a command, then run it (not with --dry-run). Its standard input is /dev/null: under
# `curl ... | sh` the script itself arrives on standard input, and must not be eaten.
run() {
    show "$@"
    [ "$DRY_RUN" = 1 ] && return 0
    "$@" </dev/null
}

# Write standard input to $1 with mode $2 (atomically: a temporary file, then rename).
write_file() {
    if [ "$DRY_RUN" = 1 ]; then
        info "would write $1 (mode $2, $(wc -l | tr -d ' ') lines)"
        return 0
    fi
    info "writing $1"
    if ! { cat > "$1.orrery-new" && chmod "$2" "$1.orrery-new" && mv -f "$1.orrery-new" "$1"; }; then
        die "cannot write $1"
    fi
}

is_url() {
    case $1 in http://* | https://*) return 0 ;; *) return 1 ;; esac
}

lowercase() { printf '%s' "$1" | tr '[:upper:]' '[:lower:]'; }


# ---- options ---------------------------------------------------------------------------------

ADMINS=""          # newline-separated NAME[:PASSWORD]
add_admin() {
    [ -n "$1" ] || die "--admin needs NAME or NAME:PASSWORD"
    case $1 in
        :*) die "--admin $1: the name is missing" ;;
        *:) die "--admin $1: the password is empty (leave out the colon for none)" ;;
    esac
    if [ -z "$ADMINS" ]; then ADMINS=$1; else ADMINS="$ADMINS
$1"; fi
}

parse_args() {
    BINARY=${ORRERY_BINARY:-}
    SOURCE=${ORRERY_SOURCE:-}
    NO_DOCKER=${ORRERY_NO_DOCKER:-0}
    DRY_RUN=${ORRERY_DRY_RUN:-0}
    SKIP_OS_CHECK=${ORRERY_SKIP_OS_CHECK:-0}
    if [ -n "${ORRERY_ADMIN:-}" ]; then
        set -f
        for env_admin in $ORRERY_ADMIN; do add_admin "$env_admin"; done
        set +f
    fi
    while [ $# -gt 0 ]; do
        case $1 in
            --admin) [ $# -ge 2 ] || die "--admin needs NAME[:PASSWORD]"; add_admin "$2"; shift ;;
            --admin=*) add_admin "${1#--admin=}" ;;
            --binary) [ $# -ge 2 ] || die "--binary needs a path or URL"; BINARY=$2; shift ;;
            --binary=*) BINARY=${1#--binary=} ;;
            --source) [ $# -ge 2 ] || die "--source needs a directory"; SOURCE=$2; shift ;;
            --source=*) SOURCE=${1#--source=} ;;
            --no-docker) NO_DOCKER=1 ;;
            --skip-os-check) SKIP_OS_CHECK=1 ;;
            --dry-run) DRY_RUN=1 ;;
            --print-config) print_config; exit 0 ;;
            --print-unit) print_unit; exit 0 ;;
            -h | --help) usage; exit 0 ;;
            *) die "unknown option: $1 (see --help)" ;;
        esac
        shift
    done
    if [ -n "$BINARY" ] && [ -n "$SOURCE" ]; then
        die "give --binary or --source, not both"
    fi
}

# ---- steps -----------------------------------------------------------------------------------

check_system() {
    step "Checking this machine"
    if [ "$(id -u)" != 0 ]; then
        [ "$DRY_RUN" = 1 ] || die "run me as root: curl -fsSL URL | sudo sh -s -- OPTIONS"
        warn "not root; fine for --dry-run only"
    fi
    [ -r /etc/os-release ] || die "/etc/os-release is missing: not a Debian or Ubuntu system?"
    # shellcheck disable=SC1091 # the OS's own file, read in a subshell
    os_info=$(. /etc/os-release && printf '%s\n%s\n%s\n' "${ID:-}" "${VERSION_ID:-}" "${PRETTY_NAME:-}")
    os_id=$(printf '%s\n' "$os_info" | sed -n 1p)
    os_version=$(printf '%s\n' "$os_info" | sed -n 2p)
    os_name=$(printf '%s\n' "$os_info" | sed -n 3p)
    [ -n "$os_name" ] || os_name="$os_id $os_version"
    os_major=${os_version%%.*}
    os_ok=0
    case $os_id in
        debian) [ -n "$os_major" ] && [ "$os_major" -ge 12 ] 2>/dev/null && os_ok=1 ;;
        ubuntu) [ -n "$os_major" ] && [ "$os_major" -ge 22 ] 2>/dev/null && os_ok=1 ;;
    esac
    if [ "$os_ok" = 1 ]; then
        info "$os_name: supported"
    elif [ "$SKIP_OS_CHECK" = 1 ]; then
        warn "$os_name is not Debian 12+ or Ubuntu 22.04+; going on (--skip-os-check)"
    else
        die "$os_name is not supported (Debian 12+ or Ubuntu 22.04+); --skip-os-check to try anyway"
    fi
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this installer needs Debian or Ubuntu"
    if [ ! -d /run/systemd/system ]; then
        [ "$DRY_RUN" = 1 ] || die "systemd is not running here (no /run/systemd/system); Orrery runs as a systemd service"
        warn "systemd is not running here; fine for --dry-run only"
    fi
    if dpkg-query -W -f '${Status}' orrery 2>/dev/null | grep -q 'ok installed'; then
        die "orrery is installed from a .deb package here; upgrade it with the package instead"
    fi
}

install_packages() {
    step "Installing system packages"
    wanted="ca-certificates curl"
    [ "$NO_DOCKER" = 1 ] || wanted="docker.io $wanted"
    missing=""
    for pkg in $wanted; do
        if ! dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed'; then
            missing="$missing $pkg"
        fi
    done
    if [ -z "$missing" ]; then
        info "already installed: $wanted"
    else
        run env DEBIAN_FRONTEND=noninteractive apt-get update -q || die "apt-get update failed"
        # shellcheck disable=SC2086 # one word per package
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing \
            || die "apt-get install$missing failed"
    fi
    if [ "$NO_DOCKER" = 1 ]; then
        info "not installing Docker (--no-docker)"
    else
        run systemctl enable --now docker.service || die "cannot start the Docker engine (systemctl status docker)"
    fi
}

# Sets NEW_BINARY to the file to install, or "" to keep the installed one.
get_binary() {
    step "Getting the orrery binary"
    NEW_BINARY=""
    if [ -n "$BINARY" ] && is_url "$BINARY"; then
        TMP_DIR=$(mktemp -d) || die "mktemp failed"
        trap 'rm -rf "$TMP_DIR"' EXIT
        NEW_BINARY=$TMP_DIR/orrery
        run curl -fsSL --retry 3 -o "$NEW_BINARY" "$BINARY" || die "cannot download $BINARY"
        run chmod 0755 "$NEW_BINARY"
    elif [ -n "$BINARY" ]; then
        [ -f "$BINARY" ] || die "--binary $BINARY: no such file"
        NEW_BINARY=$BINARY
        info "using $BINARY"
    elif [ -n "$SOURCE" ]; then
        [ -f "$SOURCE/Cargo.toml" ] || die "--source $SOURCE: no Cargo.toml there; give an Orrery checkout"
        grep -q '^name = "orrery"' "$SOURCE/Cargo.toml" || die "--source $SOURCE is not an Orrery checkout"
        build_from_source
        NEW_BINARY=$SOURCE/target/release/orrery
    elif [ -x "$BIN" ]; then
        info "keeping the installed $BIN ($("$BIN" version 2>/dev/null || echo 'version unknown'));"
        info "pass --binary or --source to upgrade it"
        return 0
    else
        die "no orrery binary: pass --binary PATH_OR_URL (a built orrery) or --source DIR (an
       Orrery checkout to build with cargo). There is no release download server yet."
    fi
    if [ "$DRY_RUN" != 1 ]; then
        [ -x "$NEW_BINARY" ] || die "$NEW_BINARY is not executable"
        new_version=$("$NEW_BINARY" version 2>/dev/null) \
            || die "$NEW_BINARY does not run here (wrong architecture, or not an orrery binary?)"
        case $new_version in
            "orrery "*) info "$new_version" ;;
            *) die "$NEW_BINARY is not an orrery binary (it says: $new_version)" ;;
        esac
    fi
}

build_from_source() {
    # Build as the user who called sudo when they own the checkout, so target/ stays theirs.
    builder=root
    if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ] \
        && [ "$(stat -c %U "$SOURCE" 2>/dev/null)" = "$SUDO_USER" ]; then
        builder=$SUDO_USER
    fi
    # shellcheck disable=SC2016 # expanded by the inner sh, as the building user
    build_cmd='PATH="$HOME/.cargo/bin:$PATH"; cd "$1" && cargo build --release --locked'
    if [ "$builder" = root ]; then
        if ! command -v cargo >/dev/null 2>&1 && [ ! -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
            [ "$DRY_RUN" = 1 ] || die "cargo not found: install Rust (rustup) first, or build elsewhere and pass --binary"
            warn "cargo not found (a real run would stop here)"
        fi
        run sh -c "$build_cmd" sh "$SOURCE" || die "cargo build failed in $SOURCE"
    else
        info "building as $builder, who owns $SOURCE"
        run runuser -u "$builder" -- sh -c "$build_cmd" sh "$SOURCE" \
            || die "cargo build failed in $SOURCE (as $builder; is Rust installed for $builder?)"
    fi
}

install_binary() {
    step "Installing $BIN"
    BINARY_CHANGED=0
    if [ -z "$NEW_BINARY" ]; then
        info "unchanged"
        return 0
    fi
    if [ -f "$BIN" ] && cmp -s "$NEW_BINARY" "$BIN"; then
        info "$BIN is already this binary"
        return 0
    fi
    # A temporary file and a rename: the running daemon keeps its old binary until restarted.
    run install -m 0755 "$NEW_BINARY" "$BIN.orrery-new" || die "cannot install $BIN"
    run mv -f "$BIN.orrery-new" "$BIN" || die "cannot install $BIN"
    BINARY_CHANGED=1
}

# The orrery command to configure with (the installed one; with --dry-run maybe the new one).
orrery_cmd() {
    if [ -x "$BIN" ]; then
        "$BIN" --config "$CONFIG" "$@"
    elif [ -n "${NEW_BINARY:-}" ] && [ -x "$NEW_BINARY" ]; then
        "$NEW_BINARY" --config "$CONFIG" "$@"
    else
        return 127
    fi
}

write_config() {
    step "Configuration $CONFIG"
    CONFIG_CHANGED=0
    if [ -e "$CONFIG" ]; then
        info "keeping the existing $CONFIG (it is never overwritten)"
    else
        run mkdir -p "$CONFIG_DIR" || die "cannot create $CONFIG_DIR"
        print_config | write_file "$CONFIG" 0600 || die "cannot write $CONFIG"
    fi
    if [ -e "$CONFIG" ]; then
        checked=$(orrery_cmd config show --effective 2>&1 >/dev/null)
        rc=$?
        if [ "$rc" = 127 ]; then
            info "(not checked: orrery is not installed yet)"
        elif [ "$rc" != 0 ]; then
            die "$CONFIG is not valid: $checked"
        else
            info "$CONFIG is valid"
        fi
    fi
    old_ifs=$IFS
    set -f
    IFS='
'
    for spec in $ADMINS; do
        IFS=$old_ifs
        name=$(lowercase "${spec%%:*}")
        if [ "$DRY_RUN" = 1 ]; then
            show "$BIN" --config "$CONFIG" config add-item users.admin "$name"
            continue
        fi
        show "$BIN" --config "$CONFIG" config add-item users.admin "$name"
        out=$(orrery_cmd config add-item users.admin "$name" 2>&1 </dev/null) \
            || die "cannot add $name to users.admin: $out"
        info "$(printf '%s' "$out" | head -n 1)"
        case $out in *"already contains"*) ;; *) CONFIG_CHANGED=1 ;; esac
    done
    IFS=$old_ifs
    set +f
}

install_unit() {
    step "Installing the systemd unit $UNIT"
    UNIT_CHANGED=0
    if [ -f "$UNIT" ] && print_unit | cmp -s - "$UNIT"; then
        info "already up to date"
    else
        print_unit | write_file "$UNIT" 0644 || die "cannot write $UNIT"
        UNIT_CHANGED=1
    fi
    run systemctl daemon-reload || die "systemctl daemon-reload failed"
    run systemctl enable orrery.service || die "systemctl enable orrery failed"
}

start_service() {
    step "Starting orrery"
    if [ "$DRY_RUN" != 1 ] && systemctl is-active --quiet orrery.service; then
        if [ "$BINARY_CHANGED" = 1 ] || [ "$UNIT_CHANGED" = 1 ]; then
            run systemctl restart orrery.service || true
        elif [ "$CONFIG_CHANGED" = 1 ]; then
            run systemctl reload orrery.service || true
        else
            info "already running, nothing changed"
        fi
    else
        run systemctl restart orrery.service || true
    fi
    port=$(orrery_cmd config get http.port 2>/dev/null) || port=80
    address=$(orrery_cmd config get http.address 2>/dev/null) || address=""
    base_url=$(orrery_cmd config get base_url 2>/dev/null) || base_url=/
    case $address in
        "" | 0.0.0.0 | ::) host=127.0.0.1 ;;
        *:*) host="[$address]" ;;
        *) host=$address ;;
    esac
    API_URL="http://$host:$port${base_url}hub/api/"
    info "waiting up to ${HEALTH_TIMEOUT}s for $API_URL"
    show curl -fsS "$API_URL"
    [ "$DRY_RUN" = 1 ] && return 0
    waited=0
    until curl -fsS -o /dev/null --max-time 5 "$API_URL" 2>/dev/null; do
        if [ "$waited" -ge "$HEALTH_TIMEOUT" ]; then
            printf '\n' >&2
            warn "orrery did not answer at $API_URL within ${HEALTH_TIMEOUT}s; its last log lines:"
            journalctl -u orrery.service -n 50 --no-pager >&2 || true
            die "orrery is not running; fix the problem above, then re-run this installer"
        fi
        sleep 2
        waited=$((waited + 2))
    done
    info "orrery answers: $(curl -fsS --max-time 5 "$API_URL" 2>/dev/null)"
}

set_passwords() {
    old_ifs=$IFS
    set -f
    IFS='
'
    for spec in $ADMINS; do
        IFS=$old_ifs
        case $spec in *:*) ;; *) continue ;; esac
        name=$(lowercase "${spec%%:*}")
        password=${spec#*:}
        step "Setting the password of admin $name"
        if [ "$DRY_RUN" = 1 ]; then
            info "\$ echo '********' | $BIN --config $CONFIG users add $name --admin --password-stdin"
            info "  (or users set-password $name, if $name exists)"
            continue
        fi
        if orrery_cmd users list </dev/null | awk '{print $1}' | grep -qx "$name"; then
            info "\$ echo '********' | $BIN --config $CONFIG users set-password $name"
            printf '%s\n' "$password" | orrery_cmd users set-password "$name" \
                || die "cannot set the password of $name"
        else
            info "\$ echo '********' | $BIN --config $CONFIG users add $name --admin --password-stdin"
            printf '%s\n' "$password" | orrery_cmd users add "$name" --admin --password-stdin \
                || die "cannot create $name"
        fi
    done
    IFS=$old_ifs
    set +f
}

summary() {
    step "Checking the installation (orrery doctor)"
    if [ "$DRY_RUN" = 1 ]; then
        show "$BIN" --config "$CONFIG" doctor
    else
        orrery_cmd doctor </dev/null || warn "orrery doctor found problems (above), each with its fix"
    fi
    ip=$(hostname -I 2>/dev/null | awk '{print $1}')
    [ -n "$ip" ] || ip=THIS-MACHINE
    base_url=$(orrery_cmd config get base_url 2>/dev/null) || base_url=/
    port=$(orrery_cmd config get http.port 2>/dev/null) || port=80
    port_part=":$port"
    [ "$port" != 80 ] || port_part=""
    step "Done"
    [ "$DRY_RUN" = 1 ] && info "(dry run: nothing was changed)"
    info "Orrery: http://$ip$port_part${base_url}hub/"
    auth=$(orrery_cmd config get auth.type 2>/dev/null) || auth=firstuse
    case $auth in
        firstuse)
            signup=$(orrery_cmd config get auth.firstuse.create_users 2>/dev/null) || signup=false
            info "Log in with a user name and a password (at least 7 characters): the first"
            info "password a user logs in with becomes its password, so admins created without"
            info "a password should log in now."
            if [ "$signup" = true ]; then
                warn "sign-up is open (auth.firstuse.create_users = true): anyone who reaches the hub can make an account"
            else
                info "Sign-up is closed: add users with sudo orrery users add NAME (or the admin page)."
            fi ;;
        native) info "Log in with a user an admin created: sudo orrery users add NAME --password-stdin" ;;
        *) info "Authenticator: $auth" ;;
    esac
    [ -n "$ADMINS" ] || info "No admin yet: sudo orrery config add-item users.admin NAME && sudo orrery config reload"
    info "Settings: sudo orrery config show | set KEY VALUE | reload   Logs: journalctl -u orrery"
}

main() {
    parse_args "$@"
    [ "$DRY_RUN" = 1 ] && printf 'Dry run: the commands are printed, nothing is changed.\n'
    check_system
    install_packages
    get_binary
    install_binary
    write_config
    install_unit
    start_service
    set_passwords
    summary
}

main "$@"
