#!/bin/sh
# Orrery installer for a fresh Debian 12 or Ubuntu 22.04+ machine with systemd; POSIX sh (dash).
#
#   curl -fsSL URL-OF-THIS-SCRIPT | sudo sh -s -- --admin alice --binary URL-OR-PATH
#   sudo sh bootstrap/bootstrap.sh --admin alice:a-long-password --source .
#   sudo sh bootstrap/bootstrap.sh --uninstall        # or --purge, --purge-homes
#
# Options and what it does: sh bootstrap.sh --help (the usage() text below).
# Everything runs from main() at the very end, so a download cut short runs nothing.
set -u

usage() {
cat <<'ORRERY_USAGE_EOF'
Install, upgrade or remove Orrery on this machine (Debian 12+, Ubuntu 22.04+, with systemd).

  curl -fsSL URL-OF-THIS-SCRIPT | sudo sh -s -- --admin alice --binary URL-OR-PATH
  sudo sh bootstrap/bootstrap.sh --admin alice:a-long-password --source .

There is no release download server yet: say where the orrery binary comes from, either
  --binary PATH_OR_URL   a built orrery binary: a local file, or an http(s) URL fetched with curl
  --source DIR           an Orrery checkout, built here with `cargo build --release --locked`
                         (as the sudo user when they own DIR); needs Rust installed
Re-running the installer upgrades in place: it replaces the binary and the systemd unit and
restarts the service when they changed (a config change is applied with a reload);
/etc/orrery/config.toml, /var/lib/orrery, the running user servers and the users' files are
kept. Without --binary or --source a re-run keeps the installed binary. A binary older than
the installed one is refused (versions compared as Debian versions) unless --allow-downgrade;
the same version with other bytes (a rebuild) is installed.

Options (each also as an environment variable):
  --admin NAME[:PASSWORD]  make NAME an admin (users.admin; repeatable); with a password, also
                           create the user with that password, or reset it if NAME exists
                           ORRERY_ADMIN="alice bob:pw" (space-separated)
  --binary PATH_OR_URL     ORRERY_BINARY
  --source DIR             ORRERY_SOURCE
  --backend docker|local|k3s
                           where user servers run (spawner.backend; ORRERY_BACKEND): written
                           into a new config, or set in the existing one with
                           `orrery config set spawner.backend`; local installs no Docker.
                           k3s: a single-node Kubernetes (k3s) on this machine, and
                           spawner.backend = "kubernetes" (see "The k3s backend" below)
  --user-requirements-txt-url URL
                           install the pip requirements file at URL for every user, as TLJH's
                           option does: `orrery env install -r` builds it into the images new
                           servers and kernels get (ORRERY_USER_REQUIREMENTS_TXT_URL; docker
                           backend; a re-run with the same file changes nothing)
  --allow-downgrade        install a binary older than the installed one (ORRERY_ALLOW_DOWNGRADE=1)
  --no-docker              do not install docker.io (ORRERY_NO_DOCKER=1)
  --skip-os-check          install on another Debian-like system (ORRERY_SKIP_OS_CHECK=1)
  --dry-run                print the commands, change nothing (ORRERY_DRY_RUN=1)
  --print-config           print the config.toml a first install writes, and exit
  --print-unit             print the systemd unit this installs, and exit
  -h, --help               this help

Removing Orrery (each alone, or with --dry-run / --yes):
  --uninstall      stop and disable the service, remove this hub's containers (user servers,
                   kernels) with `orrery cleanup`, then the unit and /usr/local/bin/orrery;
                   keeps /etc/orrery, /var/lib/orrery and the users' home volumes
  --purge          as --uninstall, and also delete /etc/orrery and /var/lib/orrery (config,
                   users, tokens); never the users' home volumes
  --purge-homes    as --purge, and also delete the users' home volumes or directories
                   (`orrery cleanup --homes`): their files are gone for good. Asks you to
                   type "yes" on the terminal
  --yes            do not ask (ORRERY_YES=1); without a terminal --purge-homes needs it

The k3s backend (--backend k3s): user servers and kernels run as pods of a k3s node on this
machine; no docker.io is installed (k3s brings its own containerd). Steps it adds: install
k3s with its official installer unless k3s is installed already (the k3s command and
/etc/systemd/system/k3s.service), wait up to 120 s for this node to be Ready (k3s kubectl
get nodes), then set spawner.kubernetes.kubeconfig = "/etc/rancher/k3s/k3s.yaml",
spawner.kubernetes.hub_address = this node's InternalIP and spawner.backend = "kubernetes".
  ORRERY_K3S_INSTALLER_URL=URL  where the installer comes from (default https://get.k3s.io);
                           k3s's own variables (INSTALL_K3S_VERSION, INSTALL_K3S_EXEC, ...)
                           are passed to it: sudo env INSTALL_K3S_VERSION=... sh bootstrap.sh
  ORRERY_K3S_INSTALLER=PATH     an air-gapped machine: run this local copy of k3s's install.sh
                           with INSTALL_K3S_SKIP_DOWNLOAD=true. Put the k3s binary at
                           /usr/local/bin/k3s (chmod 0755) and the airgap images tarball
                           (k3s-airgap-images-ARCH.tar.zst) in /var/lib/rancher/k3s/agent/images/
                           first, both from the same k3s release
  ORRERY_K3S_READY_TIMEOUT=SECONDS  how long to wait for the node to be Ready (default 120)
k3s does not see Docker's images: import an image with
`docker save IMAGE | sudo k3s ctr images import -` (on a machine with Docker), or let k3s
pull it from a registry (spawner.kubernetes.image_pull_secrets for a private one; set
user_environment.registry for the images `orrery env install` derives). The rest (homes,
GPUs, a cluster of several nodes): docs/kubernetes.md.

Steps (each is printed, and an error names its step): check root, the OS and systemd;
apt-get install docker.io ca-certificates curl (no docker.io with --no-docker, the local
or the k3s backend); with k3s, install k3s and wait for the node; install the binary as
/usr/local/bin/orrery (a temporary file, then a rename); write /etc/orrery/config.toml if
absent; set spawner.backend (and with k3s the spawner.kubernetes keys); add the admins to
users.admin; install /etc/systemd/system/orrery.service; enable and (re)start or reload
it; wait up to 60 s for http://127.0.0.1/hub/api/; set the admins' passwords; install the
user requirements (with --user-requirements-txt-url); run `orrery doctor`; print the URL. Every step can be re-run: after a failure, fix the cause
and run the same command again.
ORRERY_USAGE_EOF
}

BIN=/usr/local/bin/orrery
CONFIG_DIR=/etc/orrery
CONFIG=$CONFIG_DIR/config.toml
STATE_DIR=/var/lib/orrery
UNIT=/etc/systemd/system/orrery.service
HEALTH_TIMEOUT=60
# --backend k3s: where k3s's official installer puts things (its defaults).
K3S_INSTALLER_URL_DEFAULT=https://get.k3s.io
K3S_BIN=/usr/local/bin/k3s
K3S_UNIT=/etc/systemd/system/k3s.service
K3S_KUBECONFIG=/etc/rancher/k3s/k3s.yaml
K3S_IMAGES_DIR=/var/lib/rancher/k3s/agent/images
# One line per node: name, Ready status, InternalIP(s).
K3S_NODES_JSONPATH='{range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{" "}{.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}'

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
After=network-online.target docker.service k3s.service
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
# Only what root needs here: bind ports 80/443, create and hand over host-path home
# directories (chown), remove a purged user's files, signal the local backend's processes.
CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER CAP_KILL
# Containers get their namespaces from dockerd, never from this process.
RestrictNamespaces=yes
PrivateIPC=yes
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
# Files the daemon creates are not world-readable (the state directory is 0700 anyway).
UMask=0027
# `systemd-analyze security orrery`: 3.5 OK with these lines, 7.2 MEDIUM without the six above.

[Install]
WantedBy=multi-user.target
ORRERY_UNIT_EOF
}

# ---- helpers ---------------------------------------------------------------------------------

CURRENT_STEP=""
MODE=install       # install | uninstall | purge | purge-homes
step() { CURRENT_STEP=$*; printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
# An error names the step it stopped in; every step is safe to run again.
die() {
    if [ -z "$CURRENT_STEP" ]; then
        printf 'ERROR: %s\n' "$*" >&2
    else
        printf "ERROR in step '%s': %s\n" "$CURRENT_STEP" "$*" >&2
        if [ "$MODE" = install ]; then
            printf "Nothing is half-done that a re-run won't fix: re-run the installer after fixing this.\n" >&2
        else
            printf "Nothing is half-done that a re-run won't fix: re-run it with --%s after fixing this.\n" "$MODE" >&2
        fi
    fi
    exit 1
}

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

# Write standard input to $1 with mode $2 (atomically: a temporary file, then rename). Returns
# non-zero on failure (it runs in a pipeline's subshell: the caller dies).
write_file() {
    if [ "$DRY_RUN" = 1 ]; then
        info "would write $1 (mode $2, $(wc -l | tr -d ' ') lines)"
        return 0
    fi
    info "writing $1"
    if ! { cat > "$1.orrery-new" && chmod "$2" "$1.orrery-new" && mv -f "$1.orrery-new" "$1"; }; then
        rm -f "$1.orrery-new"
        return 1
    fi
}

is_url() {
    case $1 in http://* | https://*) return 0 ;; *) return 1 ;; esac
}

lowercase() { printf '%s' "$1" | tr '[:upper:]' '[:lower:]'; }

# The spawner.backend a config file names (a plain reading of its [spawner] table; "" if none).
config_file_backend() {
    [ -r "$1" ] || return 0
    sed -n '/^[[:space:]]*\[spawner\][[:space:]]*$/,/^[[:space:]]*\[/{
        s/^[[:space:]]*backend[[:space:]]*=[[:space:]]*["'\'']\([A-Za-z]*\)["'\''].*/\1/p
    }' "$1" | head -n 1
}

# The string (or bare word) KEY (table.name, e.g. spawner.kubernetes.kubeconfig) has in the
# config file $1: a plain reading of the table's `name = "value"` line; "" if none.
config_file_value() {
    [ -r "$1" ] || return 0
    cfv_table=$(printf '%s' "${2%.*}" | sed 's/\./\\./g')
    cfv_name=${2##*.}
    sed -n "/^[[:space:]]*\[$cfv_table\][[:space:]]*\$/,/^[[:space:]]*\[/{
        s/^[[:space:]]*${cfv_name}[[:space:]]*=[[:space:]]*[\"']\([^\"']*\)[\"'].*/\1/p
    }" "$1" | head -n 1
}

# The spawner.backend value --backend stands for (k3s is the kubernetes backend on k3s).
config_backend() {
    if [ "$BACKEND" = k3s ]; then printf 'kubernetes'; else printf '%s' "$BACKEND"; fi
}

# The config a first install writes: print_config, with the backend --backend asked for.
# With k3s, the [spawner.kubernetes] keys too (the node is Ready by then: K3S_NODE_IP).
new_config() {
    if [ "$BACKEND" = local ]; then
        print_config | sed \
            -e 's/^# One container per user on this machine.s Docker engine\.$/# One process per user on this machine, as the daemon'\''s own user (jupyterhub-singleuser on its PATH)./' \
            -e 's/^backend = "docker"$/backend = "local"/'
    elif [ "$BACKEND" = k3s ]; then
        print_config | awk -v kubeconfig="$K3S_KUBECONFIG" -v ip="$K3S_NODE_IP" '
            /^# One container per user on this machine.s Docker engine\.$/ {
                print "# One pod per user (and per remote kernel) on this machine'\''s k3s node (docs/kubernetes.md)."
                next
            }
            $0 == "backend = \"docker\"" {
                print "backend = \"kubernetes\""
                print ""
                print "[spawner.kubernetes]"
                print "# k3s'\''s kubeconfig, and this node'\''s address: where pods reach the hub (--backend k3s)."
                print "kubeconfig = \"" kubeconfig "\""
                print "hub_address = \"" ip "\""
                next
            }
            { print }'
    else
        print_config
    fi
}

# Seconds since the epoch at which the running service last (re)started; "" if unknown.
service_started_at() {
    started=$(systemctl show -p ActiveEnterTimestamp --value orrery.service 2>/dev/null) || return 0
    [ -n "$started" ] || return 0
    date -d "$started" +%s 2>/dev/null || true
}

# A Debian version from `orrery X.Y.Z[-pre]`: "-rc.1" sorts before the release as "~rc.1".
deb_version() { printf '%s' "${1#orrery }" | tr '-' '~'; }


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

set_mode() {
    if [ "$MODE" != install ] && [ "$MODE" != "$1" ]; then
        die "give one of --uninstall, --purge and --purge-homes"
    fi
    MODE=$1
}

parse_args() {
    BINARY=${ORRERY_BINARY:-}
    SOURCE=${ORRERY_SOURCE:-}
    BACKEND=${ORRERY_BACKEND:-}
    NO_DOCKER=${ORRERY_NO_DOCKER:-0}
    DRY_RUN=${ORRERY_DRY_RUN:-0}
    SKIP_OS_CHECK=${ORRERY_SKIP_OS_CHECK:-0}
    ALLOW_DOWNGRADE=${ORRERY_ALLOW_DOWNGRADE:-0}
    YES=${ORRERY_YES:-0}
    REQUIREMENTS_URL=${ORRERY_USER_REQUIREMENTS_TXT_URL:-}
    K3S_INSTALLER_URL=${ORRERY_K3S_INSTALLER_URL:-$K3S_INSTALLER_URL_DEFAULT}
    K3S_INSTALLER=${ORRERY_K3S_INSTALLER:-}
    K3S_READY_TIMEOUT=${ORRERY_K3S_READY_TIMEOUT:-120}
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
            --backend) [ $# -ge 2 ] || die "--backend needs docker, local or k3s"; BACKEND=$2; shift ;;
            --backend=*) BACKEND=${1#--backend=} ;;
            --user-requirements-txt-url) [ $# -ge 2 ] || die "--user-requirements-txt-url needs a URL"; REQUIREMENTS_URL=$2; shift ;;
            --user-requirements-txt-url=*) REQUIREMENTS_URL=${1#--user-requirements-txt-url=} ;;
            --allow-downgrade) ALLOW_DOWNGRADE=1 ;;
            --no-docker) NO_DOCKER=1 ;;
            --skip-os-check) SKIP_OS_CHECK=1 ;;
            --dry-run) DRY_RUN=1 ;;
            --uninstall) set_mode uninstall ;;
            --purge) set_mode purge ;;
            --purge-homes) set_mode purge-homes ;;
            --yes | -y) YES=1 ;;
            --print-config) print_config; exit 0 ;;
            --print-unit) print_unit; exit 0 ;;
            -h | --help) usage; exit 0 ;;
            *) die "unknown option: $1 (see --help)" ;;
        esac
        shift
    done
    case $BACKEND in
        "" | docker | local | k3s) ;;
        *) die "--backend $BACKEND: the backend is docker, local or k3s" ;;
    esac
    if [ "$MODE" != install ]; then
        if [ -n "$BINARY$SOURCE$ADMINS$BACKEND$REQUIREMENTS_URL" ] || [ "$ALLOW_DOWNGRADE" = 1 ]; then
            die "--$MODE removes Orrery: give it alone (with --dry-run or --yes if you like)"
        fi
        return 0
    fi
    if [ -n "$BINARY" ] && [ -n "$SOURCE" ]; then
        die "give --binary or --source, not both"
    fi
    if [ -n "$REQUIREMENTS_URL" ]; then
        is_url "$REQUIREMENTS_URL" || die "--user-requirements-txt-url $REQUIREMENTS_URL: give an http(s) URL"
        if [ "$BACKEND" = k3s ]; then
            die "--user-requirements-txt-url builds images with the Docker engine, which --backend k3s does not install: install without it, then install docker.io, set user_environment.registry (k3s pulls the images from there) and run orrery env install -r"
        fi
    fi
    if [ "$BACKEND" = k3s ]; then
        case $K3S_READY_TIMEOUT in
            "" | *[!0-9]*) die "ORRERY_K3S_READY_TIMEOUT=$K3S_READY_TIMEOUT: give a number of seconds" ;;
        esac
        is_url "$K3S_INSTALLER_URL" || die "ORRERY_K3S_INSTALLER_URL=$K3S_INSTALLER_URL: give an http(s) URL"
    elif [ -n "$K3S_INSTALLER" ] || [ -n "${ORRERY_K3S_INSTALLER_URL:-}" ]; then
        warn "ORRERY_K3S_INSTALLER(_URL) is set but the backend is not k3s (--backend k3s): not installing k3s"
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
        if [ "$MODE" = install ]; then
            die "orrery is installed from a .deb package here; upgrade it with the package instead"
        fi
        die "orrery is installed from a .deb package here: remove it with apt remove orrery (apt purge orrery also deletes /etc/orrery and /var/lib/orrery)"
    fi
}

# The backend in effect after this run: --backend, else the existing config's, else docker.
effective_backend() {
    if [ -n "$BACKEND" ]; then
        printf '%s' "$BACKEND"
        return 0
    fi
    file_backend=$(config_file_backend "$CONFIG")
    printf '%s' "${file_backend:-docker}"
}

install_packages() {
    step "Installing system packages"
    wanted="ca-certificates curl"
    backend=$(effective_backend)
    with_docker=1
    if [ "$NO_DOCKER" = 1 ]; then
        with_docker=0
        info "not installing Docker (--no-docker)"
    elif [ "$backend" = local ]; then
        with_docker=0
        info "not installing Docker (the local backend runs servers as processes)"
    elif [ "$backend" = k3s ] || [ "$backend" = kubernetes ]; then
        with_docker=0
        info "not installing Docker (the kubernetes backend's pods run in k3s's own containerd)"
    fi
    [ "$with_docker" = 0 ] || wanted="docker.io $wanted"
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
    if [ "$with_docker" = 1 ]; then
        run systemctl enable --now docker.service || die "cannot start the Docker engine (systemctl status docker)"
    fi
}

# --backend k3s: run k3s's official installer, unless k3s is installed already (its command
# and its systemd unit: an air-gapped machine has the binary before the installer ran).
install_k3s() {
    step "Installing k3s"
    if command -v k3s >/dev/null 2>&1 && [ -f "$K3S_UNIT" ]; then
        info "already installed ($(k3s --version 2>/dev/null </dev/null | head -n 1), $K3S_UNIT): not running its installer again"
        return 0
    fi
    if [ -n "$K3S_INSTALLER" ]; then
        # Air-gapped: k3s's documented way, the installer with INSTALL_K3S_SKIP_DOWNLOAD=true and
        # the binary and images put in place by hand.
        [ -f "$K3S_INSTALLER" ] || die "ORRERY_K3S_INSTALLER=$K3S_INSTALLER: no such file (a copy of k3s's install.sh, from $K3S_INSTALLER_URL_DEFAULT)"
        if [ ! -x "$K3S_BIN" ]; then
            msg="an air-gapped install needs the k3s binary at $K3S_BIN (chmod 0755) and the airgap images tarball (k3s-airgap-images-ARCH.tar.zst) in $K3S_IMAGES_DIR/, from the same k3s release"
            [ "$DRY_RUN" = 1 ] || die "$msg"
            warn "$msg (a real run would stop here)"
        fi
        has_images=0
        for image_file in "$K3S_IMAGES_DIR"/*.tar*; do
            [ -e "$image_file" ] && has_images=1
        done
        [ "$has_images" = 1 ] || warn "no images tarball in $K3S_IMAGES_DIR/: k3s will try to pull its system images from the network"
        run env INSTALL_K3S_SKIP_DOWNLOAD=true sh "$K3S_INSTALLER" \
            || die "the k3s installer $K3S_INSTALLER failed (its output is above; journalctl -u k3s)"
        return 0
    fi
    # Downloaded first, then run: a download cut short runs nothing.
    if [ "$DRY_RUN" = 1 ]; then
        show curl -sfL --retry 3 -o /tmp/k3s-install.sh "$K3S_INSTALLER_URL"
        show sh /tmp/k3s-install.sh
        return 0
    fi
    k3s_tmp=$(mktemp -d) || die "cannot make a temporary directory"
    if ! run curl -sfL --retry 3 -o "$k3s_tmp/install.sh" "$K3S_INSTALLER_URL"; then
        rm -rf "$k3s_tmp"
        die "cannot download the k3s installer from $K3S_INSTALLER_URL (an air-gapped machine: ORRERY_K3S_INSTALLER=PATH, see --help)"
    fi
    if ! run sh "$k3s_tmp/install.sh"; then
        rm -rf "$k3s_tmp"
        die "the k3s installer failed (its output is above; journalctl -u k3s)"
    fi
    rm -rf "$k3s_tmp"
}

# The line "NAME READY IP..." of this node among the nodes' lines on standard input: the one
# named $1, else the only one.
k3s_this_node() {
    awk -v me="$1" 'NF { n++; last = $0; if ($1 == me) { print; found = 1; exit } }
        END { if (!found && n == 1) print last }'
}

# --backend k3s: wait until this node is Ready; sets K3S_NODE_IP to its InternalIP.
wait_k3s_ready() {
    step "Waiting for the k3s node to be Ready"
    info "waiting up to ${K3S_READY_TIMEOUT}s"
    show k3s kubectl get nodes -o "jsonpath=$K3S_NODES_JSONPATH"
    if [ "$DRY_RUN" = 1 ]; then
        K3S_NODE_IP=NODE-IP
        info "(a real run reads this node's InternalIP here: $K3S_NODE_IP below)"
        return 0
    fi
    node_name=$(lowercase "${K3S_NODE_NAME:-$(hostname 2>/dev/null)}")
    waited=0
    while :; do
        if answer=$(k3s kubectl get nodes -o "jsonpath=$K3S_NODES_JSONPATH" 2>&1 </dev/null); then
            line=$(printf '%s\n' "$answer" | k3s_this_node "$node_name")
            # shellcheck disable=SC2086 # the line's words: name, status, addresses
            [ -z "$line" ] || set -- $line
            if [ -n "$line" ] && [ "${2:-}" = True ] && [ -n "${3:-}" ]; then
                K3S_NODE_IP=$3
                info "node $1 is Ready; its InternalIP is $K3S_NODE_IP"
                break
            fi
            [ -n "$line" ] || answer="this node ($node_name; K3S_NODE_NAME if k3s named it otherwise) is not among the nodes: $answer"
        fi
        if [ "$waited" -ge "$K3S_READY_TIMEOUT" ]; then
            die "the k3s node is not Ready after ${K3S_READY_TIMEOUT}s (the last answer: $(printf '%s' "$answer" | tr '\n' ' ')). Look at journalctl -u k3s, systemctl status k3s and k3s kubectl describe nodes; ORRERY_K3S_READY_TIMEOUT=SECONDS waits longer"
        fi
        sleep 2
        waited=$((waited + 2))
    done
    [ -r "$K3S_KUBECONFIG" ] || die "k3s is running but there is no kubeconfig at $K3S_KUBECONFIG (is this machine a k3s agent rather than a server?)"
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

# Refuse a binary older than the installed one, unless --allow-downgrade. Both say
# `orrery X.Y.Z`; they are compared as Debian versions. The same version is a rebuild: fine.
check_downgrade() {
    [ -x "$BIN" ] && [ -x "$NEW_BINARY" ] || return 0
    new_version=$("$NEW_BINARY" version 2>/dev/null </dev/null) || return 0
    if ! old_version=$("$BIN" version 2>/dev/null </dev/null); then
        warn "the installed $BIN does not say its version; not comparing versions"
        return 0
    fi
    if [ "$old_version" = "$new_version" ]; then
        info "same version as the installed one ($new_version): a rebuild, replacing it"
    elif dpkg --compare-versions "$(deb_version "$new_version")" lt "$(deb_version "$old_version")"; then
        if [ "$ALLOW_DOWNGRADE" = 1 ]; then
            warn "downgrading $BIN from $old_version to $new_version (--allow-downgrade)"
        else
            die "refusing to downgrade: the new binary is $new_version, older than the installed $old_version ($BIN). An older orrery may not understand the state a newer one wrote; pass --allow-downgrade (ORRERY_ALLOW_DOWNGRADE=1) if you mean it"
        fi
    else
        info "upgrading from $old_version to $new_version"
    fi
}

install_binary() {
    step "Installing $BIN"
    BINARY_CHANGED=0
    if [ -z "$NEW_BINARY" ]; then
        info "unchanged"
        return 0
    fi
    if [ -f "$BIN" ] && [ -f "$NEW_BINARY" ] && cmp -s "$NEW_BINARY" "$BIN"; then
        info "$BIN is already this binary"
        return 0
    fi
    check_downgrade
    # A temporary file and a rename: the running daemon keeps its old binary until restarted,
    # and $BIN is never half-written.
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

# Set KEY ($1) to VALUE ($2) with `orrery config set` unless it has that value already; $3:
# a hint added to the error.
set_config_key() {
    if ! current=$(orrery_cmd config get "$1" 2>/dev/null </dev/null); then
        if [ "$1" = spawner.backend ]; then
            current=$(config_file_backend "$CONFIG")
        else
            current=$(config_file_value "$CONFIG" "$1")
        fi
    fi
    if [ "$current" = "$2" ]; then
        info "$1 is already $2"
        return 0
    fi
    show "$BIN" --config "$CONFIG" config set "$1" "$2"
    [ "$DRY_RUN" = 1 ] && return 0
    out=$(orrery_cmd config set "$1" "$2" 2>&1 </dev/null) \
        || die "cannot set $1 to $2: $out${3:+ $3}"
    [ -z "$out" ] || info "$(printf '%s' "$out" | head -n 1)"
}

write_config() {
    step "Configuration $CONFIG"
    if [ -e "$CONFIG" ]; then
        info "keeping the existing $CONFIG (it is never overwritten)"
    else
        run mkdir -p "$CONFIG_DIR" || die "cannot create $CONFIG_DIR"
        new_config | write_file "$CONFIG" 0600 || die "cannot write $CONFIG"
        [ -z "$BACKEND" ] || info "spawner.backend = \"$(config_backend)\""
    fi
    if [ -e "$CONFIG" ]; then
        checked=$(orrery_cmd config show --effective 2>&1 >/dev/null </dev/null)
        rc=$?
        if [ "$rc" = 127 ]; then
            info "(not checked: orrery is not installed yet)"
        elif [ "$rc" != 0 ]; then
            die "$CONFIG is not valid: $checked"
        else
            info "$CONFIG is valid"
        fi
    fi
    if [ "$BACKEND" = k3s ]; then
        # The backend's settings first, the backend last: the switch is made once they are there.
        old_orrery="(does this orrery predate the kubernetes backend? install a newer one with --binary or --source)"
        set_config_key spawner.kubernetes.kubeconfig "$K3S_KUBECONFIG" "$old_orrery"
        set_config_key spawner.kubernetes.hub_address "$K3S_NODE_IP" "$old_orrery"
        set_config_key spawner.backend kubernetes "$old_orrery"
    elif [ -n "$BACKEND" ]; then
        set_config_key spawner.backend "$BACKEND"
    fi
    old_ifs=$IFS
    set -f
    IFS='
'
    for spec in $ADMINS; do
        IFS=$old_ifs
        name=$(lowercase "${spec%%:*}")
        show "$BIN" --config "$CONFIG" config add-item users.admin "$name"
        [ "$DRY_RUN" = 1 ] && continue
        out=$(orrery_cmd config add-item users.admin "$name" 2>&1 </dev/null) \
            || die "cannot add $name to users.admin: $out"
        info "$(printf '%s' "$out" | head -n 1)"
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

# Restart when the running daemon is not the installed binary or unit (changed now, or by an
# earlier run that stopped before its restart); else reload the config, restarting when the
# reload names a key that needs a restart. So a re-run always converges.
start_service() {
    step "Starting orrery"
    if [ "$DRY_RUN" != 1 ] && systemctl is-active --quiet orrery.service; then
        why=""
        pid=$(systemctl show -p MainPID --value orrery.service 2>/dev/null) || pid=0
        started=$(service_started_at)
        if [ "$BINARY_CHANGED" = 1 ]; then
            why="the binary changed"
        elif [ -n "$pid" ] && [ "$pid" != 0 ] && [ -e "/proc/$pid/exe" ] \
            && [ "$(stat -L -c %d:%i "/proc/$pid/exe" 2>/dev/null)" != "$(stat -L -c %d:%i "$BIN" 2>/dev/null)" ]; then
            why="the running daemon is not $BIN"
        elif [ "$UNIT_CHANGED" = 1 ]; then
            why="the unit changed"
        elif [ -z "$started" ] || [ "$(stat -c %Y "$UNIT" 2>/dev/null || echo 0)" -gt "$started" ]; then
            why="the unit is newer than the running service"
        fi
        if [ -n "$why" ]; then
            info "restarting: $why"
            run systemctl restart orrery.service || true
        else
            show "$BIN" --config "$CONFIG" config reload
            if out=$(orrery_cmd config reload 2>&1 </dev/null); then
                printf '%s\n' "$out" | sed 's/^/    /'
                case $out in
                    *"needs a restart"*) run systemctl restart orrery.service || true ;;
                esac
            else
                warn "the reload failed ($out); restarting instead"
                run systemctl restart orrery.service || true
            fi
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
            die "orrery is not running; fix the problem above"
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

# TLJH's --user-requirements-txt-url: the file becomes part of the software environment
# (orrery env install -r), built into the images every new server and kernel gets.
install_user_requirements() {
    [ -n "$REQUIREMENTS_URL" ] || return 0
    step "Installing the user requirements from $REQUIREMENTS_URL (orrery env install -r)"
    if [ "$(effective_backend)" = local ]; then
        die "--user-requirements-txt-url builds container images: it needs the docker backend (the local backend uses this machine's Python; pip install there)"
    fi
    if [ "$DRY_RUN" = 1 ]; then
        show curl -fsSL -o /tmp/orrery-requirements/user-requirements.txt "$REQUIREMENTS_URL"
        show "$BIN" --config "$CONFIG" env install -r /tmp/orrery-requirements/user-requirements.txt
        return 0
    fi
    req_dir=$(mktemp -d) || die "cannot make a temporary directory"
    # The file keeps one name whatever the URL, so a re-run with the same file changes nothing.
    req_file=$req_dir/user-requirements.txt
    if ! curl -fsSL -o "$req_file" "$REQUIREMENTS_URL"; then
        rm -rf "$req_dir"
        die "cannot download $REQUIREMENTS_URL"
    fi
    info "\$ $BIN --config $CONFIG env install -r $req_file"
    if ! orrery_cmd env install -r "$req_file" </dev/null; then
        rm -rf "$req_dir"
        die "installing the user requirements failed (the build's error is above); nothing was changed"
    fi
    rm -rf "$req_dir"
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
    backend=$(orrery_cmd config get spawner.backend 2>/dev/null) || backend=$(effective_backend)
    if [ "$backend" = kubernetes ] || [ "$backend" = k3s ]; then
        info "Backend kubernetes: user servers and kernels are pods; k3s pulls their images from a"
        info "registry, or finds those imported with: docker save IMAGE | sudo k3s ctr images import -"
        info "(spawner.docker.image names the image). More: docs/kubernetes.md."
    fi
    if [ "$backend" = local ]; then
        info "Backend local: each user's server is a jupyterhub-singleuser process found on the"
        info "daemon's PATH (/usr/local/bin:/usr/bin:...), run as the daemon's user, root. As root it"
        info "is refused unless spawner.local.allow_root = true; install JupyterHub/JupyterLab first."
    fi
    admins_now=$(orrery_cmd config get users.admin 2>/dev/null </dev/null) || admins_now=""
    case $admins_now in
        "" | "[]") [ -n "$ADMINS" ] || info "No admin yet: sudo orrery config add-item users.admin NAME && sudo orrery config reload" ;;
    esac
    info "Settings: sudo orrery config show | set KEY VALUE | reload   Logs: journalctl -u orrery"
}

# ---- removal ---------------------------------------------------------------------------------

# --purge-homes deletes every user's files: ask on the terminal (under `curl | sh` standard
# input is the script), unless --yes.
confirm_purge_homes() {
    step "Confirming that every user's home is to be deleted"
    if [ "$YES" = 1 ]; then
        info "confirmed by --yes"
        return 0
    fi
    if [ "$DRY_RUN" = 1 ]; then
        info "(a real run asks you to type yes here, unless --yes)"
        return 0
    fi
    if ! ( : </dev/tty ) 2>/dev/null; then
        die "--purge-homes deletes every user's home volume or directory and needs a confirmation, but there is no terminal to ask on: add --yes"
    fi
    printf '    --purge-homes deletes the config, the state AND every user'\''s home volume or\n' >/dev/tty
    printf '    directory: their notebooks and files are gone for good. Type yes to go on: ' >/dev/tty
    answer=""
    read -r answer </dev/tty || answer=""
    if [ "$answer" != yes ]; then
        CURRENT_STEP=""   # a "no" is no failure to re-run after
        die "not confirmed (you typed \"$answer\", not \"yes\"); nothing was removed"
    fi
    info "confirmed"
}

stop_service() {
    step "Stopping and disabling orrery"
    if [ "$DRY_RUN" != 1 ] && ! systemctl is-active --quiet orrery.service && [ ! -e "$UNIT" ]; then
        info "not installed as a service (no $UNIT)"
        return 0
    fi
    if [ -e "$UNIT" ]; then
        run systemctl disable --now orrery.service || die "systemctl disable --now orrery failed"
    else
        run systemctl stop orrery.service || die "systemctl stop orrery failed"
    fi
    if [ "$DRY_RUN" != 1 ] && systemctl is-active --quiet orrery.service; then
        die "orrery is still running (systemctl status orrery)"
    fi
}

# Removes this hub's containers (and with --purge-homes the users' homes) while the daemon is
# stopped and the binary, config and state are still there: `orrery cleanup` needs them.
cleanup_containers() {
    cleanup_args=cleanup
    if [ "$MODE" = purge-homes ]; then
        cleanup_args="cleanup --homes"
        step "Removing this hub's containers and the users' homes (orrery cleanup --homes)"
    else
        step "Removing this hub's containers (orrery cleanup; home volumes are kept)"
    fi
    if [ "$DRY_RUN" = 1 ]; then
        # shellcheck disable=SC2086 # "cleanup" or "cleanup --homes"
        show "$BIN" --config "$CONFIG" $cleanup_args
        return 0
    fi
    if [ ! -x "$BIN" ] || [ ! -e "$CONFIG" ]; then
        msg="no $BIN or no $CONFIG (removed already?): cannot run orrery $cleanup_args"
        [ "$MODE" = purge-homes ] && die "$msg; the users' homes are left: list them with docker volume ls"
        warn "$msg; remove any leftover containers with docker rm -f (docker ps -a)"
        return 0
    fi
    # shellcheck disable=SC2086 # "cleanup" or "cleanup --homes"
    if run "$BIN" --config "$CONFIG" $cleanup_args; then
        return 0
    fi
    if [ "$MODE" = purge-homes ]; then
        die "orrery cleanup --homes failed (above), so the users' homes are still there and nothing else was removed (the service is stopped); fix it and re-run, or use --purge to remove everything but the homes"
    fi
    warn "orrery cleanup failed or does not exist in this version (above): this hub's containers may be left; list them with docker ps -a, remove them with docker rm -f. Going on"
}

remove_files() {
    step "Removing the systemd unit $UNIT"
    run rm -f "$UNIT" "$UNIT.orrery-new" || die "cannot remove $UNIT"
    run systemctl daemon-reload || die "systemctl daemon-reload failed"
    if [ "$DRY_RUN" != 1 ]; then
        systemctl reset-failed orrery.service >/dev/null 2>&1 || true
    fi
    step "Removing $BIN"
    run rm -f "$BIN" "$BIN.orrery-new" || die "cannot remove $BIN"
}

# The state directory the config names, when it is outside /var/lib/orrery and /etc/orrery
# (a purge removes only those two; this one is named so it can be removed by hand).
outside_state_path() {
    path=$(orrery_cmd config get state.path 2>/dev/null </dev/null) || return 0
    case $path in
        "" | "$STATE_DIR" | "$STATE_DIR"/* | "$CONFIG_DIR" | "$CONFIG_DIR"/*) ;;
        /*) printf '%s' "$path" ;;
        *) ;;  # relative: below /etc/orrery
    esac
}

purge_data() {
    step "Removing the configuration and state ($CONFIG_DIR, $STATE_DIR)"
    run rm -rf "$CONFIG_DIR" "$STATE_DIR" || die "cannot remove $CONFIG_DIR and $STATE_DIR"
    [ -z "$OTHER_STATE" ] || warn "state.path named $OTHER_STATE, outside $STATE_DIR: it is not removed; delete it yourself"
}

uninstall_summary() {
    step "Done"
    [ "$DRY_RUN" = 1 ] && info "(dry run: nothing was changed)"
    info "Orrery is removed: the service, $UNIT and $BIN."
    case $MODE in
        uninstall)
            info "Kept: $CONFIG_DIR (the config), $STATE_DIR (users, tokens, servers) and the users'"
            info "home volumes. Installing again picks them up; --purge deletes the config and state." ;;
        purge)
            info "Deleted: $CONFIG_DIR and $STATE_DIR. Kept: the users' home volumes or directories"
            info "(docker volume ls); --purge-homes deletes them too." ;;
        purge-homes)
            info "Deleted: $CONFIG_DIR, $STATE_DIR and the users' homes." ;;
    esac
    info "Docker and the images the hub used are left installed."
    if [ -x "$K3S_BIN" ]; then
        info "k3s is left installed (its pods and volumes too); /usr/local/bin/k3s-uninstall.sh removes it."
    fi
}

uninstall_main() {
    [ "$DRY_RUN" = 1 ] && printf 'Dry run: the commands are printed, nothing is changed.\n'
    check_system
    [ "$MODE" != purge-homes ] || confirm_purge_homes
    OTHER_STATE=""
    [ "$MODE" = uninstall ] || OTHER_STATE=$(outside_state_path)
    stop_service
    cleanup_containers
    remove_files
    [ "$MODE" = uninstall ] || purge_data
    uninstall_summary
}

main() {
    parse_args "$@"
    if [ "$MODE" != install ]; then
        uninstall_main
        return
    fi
    [ "$DRY_RUN" = 1 ] && printf 'Dry run: the commands are printed, nothing is changed.\n'
    check_system
    install_packages
    if [ "$BACKEND" = k3s ]; then
        install_k3s
        wait_k3s_ready
    fi
    get_binary
    install_binary
    write_config
    install_unit
    start_service
    set_passwords
    install_user_requirements
    summary
}

# Tests source the script with ORRERY_BOOTSTRAP_SOURCE_ONLY=1 to run single steps against stub
# commands (tests/it/packaging.rs); everything else runs main.
[ "${ORRERY_BOOTSTRAP_SOURCE_ONLY:-0}" = 1 ] || main "$@"
