//! Orrery's configuration: one TOML file, typed with serde.
//!
//! The file lives at `/etc/orrery/config.toml` unless `--config` or `ORRERY_CONFIG` names another.
//! With no file at all Orrery runs on embedded defaults for a developer machine (port 8000,
//! state in `./orrery-state`). Key names follow The Littlest JupyterHub's where TLJH has one.
//!
//! * [`units`]: durations (`10m`) and sizes (`2G`) as they are written in the file.
//! * [`load`]: reading a file, text to [`Config`], with errors that name the key and the nearest
//!   valid key; [`discover`] finds the file, [`errors`] says what went wrong, [`schema`] is the
//!   key tree, [`validate`] checks meaning, one function per section.
//! * [`edit`]: `orrery config set/unset/add-item/...`, comment-preserving, validated, atomic.

pub mod class;
pub mod discover;
pub mod edit;
pub mod errors;
pub mod load;
pub mod providers;
pub mod redact;
pub mod schema;
pub mod units;
pub mod validate;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use class::{shared_volumes_for, GroupConfig, Profile, RoleConfig, SharedVolume};
pub use load::{load_file, parse_str, ConfigError, ConfigSource, LoadedConfig};
pub use units::{Duration, Size};

/// Where the daemon and the `config` commands look when nothing else is named.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/orrery/config.toml";
/// The state directory of an installed Orrery (a config file exists but names none).
pub const DEFAULT_STATE_PATH: &str = "/var/lib/orrery/state";
/// The state directory used when Orrery runs with no config file at all (developer machine).
pub const DEV_STATE_PATH: &str = "orrery-state";

/// The whole configuration. Every section has a default, so an empty file is valid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// URL prefix the hub is served under (`/` or `/jupyter/`); always starts and ends with `/`.
    pub base_url: String,
    pub http: Http,
    pub https: Https,
    pub internal: Internal,
    pub state: State,
    pub auth: Auth,
    pub users: Users,
    pub limits: Limits,
    pub cull: Cull,
    pub user_environment: UserEnvironment,
    pub spawner: Spawner,
    /// Remote kernels: Orrery as the users' kernel gateway (off unless `kernels.remote`).
    pub kernels: Kernels,
    /// External services (the idle culler, dashboards) and the tokens and scopes they hold.
    pub services: Vec<Service>,
    pub logging: Logging,
    /// GPUs: where NVML is, and which GPUs Orrery may schedule.
    pub gpu: Gpu,
    /// Server profiles offered on the spawn form (`[[profiles]]`).
    pub profiles: Vec<Profile>,
    /// Groups managed by the config (`[[groups]]`), with their overrides.
    pub groups: Vec<GroupConfig>,
    /// Roles granting scopes to users, groups and services (`[[roles]]`).
    pub roles: Vec<RoleConfig>,
    /// Sharing servers with other users and groups (JupyterHub 5's shares).
    pub sharing: Sharing,
    /// A message at the top of the pages (JupyterHub's `announcement` template variables).
    pub announcement: Announcement,
    /// The hub's name and logo in the pages.
    pub branding: Branding,
    /// Directories and volumes mounted into the servers and kernels of the users they are for
    /// (`[[shared_volumes]]`; Docker backend).
    pub shared_volumes: Vec<SharedVolume>,
}

/// `[announcement]`: plain text shown at the top of pages; a page's own text replaces `text`
/// there. Empty: nothing shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Announcement {
    /// Every page (unless the page has its own).
    pub text: String,
    /// The login page.
    pub login: String,
    /// The home page.
    pub home: String,
    /// The spawn pages (profile form, progress).
    pub spawn: String,
    /// The admin pages.
    pub admin: String,
}

/// `[branding]`: what the pages call the hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Branding {
    /// The name in the header and the page titles.
    pub name: String,
    /// An image file (PNG, JPEG, GIF, SVG or WebP) shown in the header instead of the name,
    /// served at `<hub>/logo`; empty: the name alone.
    pub logo: String,
}

impl Default for Branding {
    fn default() -> Self {
        Branding {
            name: "Orrery".into(),
            logo: String::new(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            base_url: "/".into(),
            http: Http::default(),
            https: Https::default(),
            internal: Internal::default(),
            state: State::default(),
            auth: Auth::default(),
            users: Users::default(),
            limits: Limits::default(),
            cull: Cull::default(),
            user_environment: UserEnvironment::default(),
            spawner: Spawner::default(),
            kernels: Kernels::default(),
            services: Vec::new(),
            logging: Logging::default(),
            gpu: Gpu::default(),
            profiles: Vec::new(),
            groups: Vec::new(),
            roles: Vec::new(),
            sharing: Sharing::default(),
            announcement: Announcement::default(),
            branding: Branding::default(),
            shared_volumes: Vec::new(),
        }
    }
}

/// The configuration in force, shared by the hub and the services it owns: a reload replaces
/// it whole, so a reader sees one version from start to end of what it does.
#[derive(Clone)]
pub struct SharedConfig(std::sync::Arc<std::sync::RwLock<std::sync::Arc<Config>>>);

impl SharedConfig {
    pub fn new(config: Config) -> SharedConfig {
        SharedConfig(std::sync::Arc::new(std::sync::RwLock::new(
            std::sync::Arc::new(config),
        )))
    }

    /// The current configuration.
    pub fn get(&self) -> std::sync::Arc<Config> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Put a new configuration in force.
    pub fn set(&self, config: Config) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = std::sync::Arc::new(config);
    }
}

impl Config {
    /// The configuration of the no-config developer mode: the defaults (loopback only), with
    /// open sign-up so that a developer can log in with any new name at once. `orrery serve`
    /// says so when it starts.
    pub fn developer() -> Config {
        let mut config = Config::default();
        config.auth.firstuse.create_users = true;
        config
    }
}

/// The public HTTP listener (browsers, API clients).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Http {
    /// Address to bind; `""` means every interface (TLJH's meaning).
    pub address: String,
    pub port: u16,
    /// Reverse proxies (addresses or CIDRs, e.g. `127.0.0.1`, `10.0.0.0/8`) whose
    /// `X-Forwarded-Proto/-For/-Host` are believed; from anyone else those headers are dropped.
    pub trusted_proxies: Vec<String>,
    /// Per-user origins: each server on a host of its own under this one
    /// (`alice.hub.example.org`), the hub on this host only ([`crate::origins`]). Empty: one
    /// origin, as JupyterHub without `subdomain_host`. Needs a wildcard DNS record and, under
    /// HTTPS, a wildcard certificate.
    pub subdomain_host: String,
}

impl Http {
    /// Does the listener only take connections from this machine? (`""` means every
    /// interface, so no.) Plain HTTP elsewhere sends passwords across the network.
    pub fn is_loopback(&self) -> bool {
        self.address
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    }
}

/// An address or CIDR, as `http.trusted_proxies` lists them: `10.0.0.1`, `10.0.0.0/8`, `::1`.
pub fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

impl Default for Http {
    fn default() -> Self {
        // A developer machine: loopback only. The installer writes 0.0.0.0 / 80 into the file.
        Http {
            address: "127.0.0.1".into(),
            port: 8000,
            trusted_proxies: Vec::new(),
            subdomain_host: String::new(),
        }
    }
}

/// Sharing a server (`[sharing]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sharing {
    /// Allow sharing without per-user origins (`http.subdomain_host`). Off by default: on one
    /// origin, JavaScript in a shared server runs with the guest's hub login.
    pub allow_single_origin: bool,
    /// How long a share code stays redeemable unless its creator says otherwise.
    pub code_max_age: Duration,
}

impl Default for Sharing {
    fn default() -> Self {
        Sharing {
            allow_single_origin: false,
            code_max_age: Duration::from_secs(86_400),
        }
    }
}

/// TLS termination in the daemon itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Https {
    pub enabled: bool,
    pub port: u16,
    /// Certificate files; when set they are served (and re-read when they change).
    pub tls: Tls,
    /// Otherwise a certificate from Let's Encrypt (or another ACME server).
    pub letsencrypt: LetsEncrypt,
}

impl Default for Https {
    fn default() -> Self {
        Https {
            enabled: false,
            port: 443,
            tls: Tls::default(),
            letsencrypt: LetsEncrypt::default(),
        }
    }
}

impl Https {
    /// Whether the certificate comes from files (else from ACME).
    pub fn uses_files(&self) -> bool {
        self.tls.cert.is_some() || self.tls.key.is_some()
    }
}

/// A certificate from an ACME server (`[https.letsencrypt]`), as TLJH's `letsencrypt.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LetsEncrypt {
    /// The account's contact (Let's Encrypt mails expiry warnings there).
    pub email: String,
    /// The names the certificate is for; each must resolve to this machine, whose port 80
    /// (`http.port`) answers the HTTP-01 challenge.
    pub domains: Vec<String>,
    /// Let's Encrypt's staging server (untrusted certificates, generous rate limits).
    pub staging: bool,
    /// Another ACME server's directory (empty: Let's Encrypt).
    pub directory_url: String,
    /// A PEM CA certificate to trust for that server's own HTTPS (a private ACME server).
    pub directory_ca: Option<PathBuf>,
    /// Renew when this share of the certificate's lifetime is left (default 0.33, a third).
    pub renew_fraction: f64,
}

impl Default for LetsEncrypt {
    fn default() -> Self {
        LetsEncrypt {
            email: String::new(),
            domains: Vec::new(),
            staging: false,
            directory_url: String::new(),
            directory_ca: None,
            renew_fraction: 0.33,
        }
    }
}

/// Certificate and key (PEM) for `https`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// The listener that user containers use to reach the hub API (and, with remote kernels, the
/// gateway). With the Docker backend it binds to the Orrery bridge's gateway address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Internal {
    /// Address to bind; empty means "decided by the backend" (the bridge gateway for Docker,
    /// loopback for the local backend).
    pub address: String,
    pub port: u16,
}

impl Default for Internal {
    fn default() -> Self {
        Internal {
            address: String::new(),
            port: 8081,
        }
    }
}

/// Where durable state (sled) lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct State {
    /// Directory of the state database. Empty: [`DEFAULT_STATE_PATH`] with a config file,
    /// [`DEV_STATE_PATH`] without one.
    pub path: PathBuf,
}

impl Default for State {
    fn default() -> Self {
        State {
            path: PathBuf::new(),
        }
    }
}

/// Which authenticator checks passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthType {
    /// TLJH's default: the first password a new name logs in with becomes its password.
    Firstuse,
    /// Only users an admin created, with passwords set by an admin or by themselves.
    Native,
    /// Any password (or one shared password) is accepted: tests and demos on loopback only.
    Dummy,
    /// The directory's password, checked by a bind (`[auth.ldap]`).
    Ldap,
    /// An OpenID Connect provider's login (`[auth.oidc]`).
    Oidc,
    /// A GitHub account (`[auth.github]`).
    Github,
}

impl AuthType {
    pub const ALL: [&'static str; 6] = ["firstuse", "native", "dummy", "ldap", "oidc", "github"];
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::Firstuse => "firstuse",
            AuthType::Native => "native",
            AuthType::Dummy => "dummy",
            AuthType::Ldap => "ldap",
            AuthType::Oidc => "oidc",
            AuthType::Github => "github",
        }
    }

    /// An identity provider checks who people are (not a password the hub keeps).
    pub fn is_external(self) -> bool {
        matches!(self, AuthType::Ldap | AuthType::Oidc | AuthType::Github)
    }

    /// People log in at the provider's own page (a button on ours), not with our form.
    pub fn is_redirect(self) -> bool {
        matches!(self, AuthType::Oidc | AuthType::Github)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Auth {
    #[serde(rename = "type")]
    pub kind: AuthType,
    pub firstuse: FirstUse,
    pub dummy: Dummy,
    pub rate_limit: RateLimit,
    /// How long a browser login lasts.
    pub session_max_age: Duration,
    /// With an identity provider: admins may also log in with a password the hub keeps
    /// (break-glass, when the provider is down); nobody else may.
    pub local_admins: bool,
    /// Provider names that become another Orrery name (`"Alice.Smith@example.org" = "asmith"`);
    /// others are mapped by the documented rule (`auth::identity::map_username`).
    pub username_map: providers::UsernameMap,
    pub ldap: providers::Ldap,
    pub oidc: providers::Oidc,
    pub github: providers::Github,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            kind: AuthType::Firstuse,
            firstuse: FirstUse::default(),
            dummy: Dummy::default(),
            rate_limit: RateLimit::default(),
            session_max_age: Duration::from_secs(14 * 24 * 3600),
            local_admins: false,
            username_map: Default::default(),
            ldap: providers::Ldap::default(),
            oidc: providers::Oidc::default(),
            github: providers::Github::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FirstUse {
    /// Whether an unknown name may create its own account by logging in. False by default (as
    /// TLJH): a hub on the internet must not let anyone sign up. Names in `users.admin` and
    /// `users.allowed` count as added by an admin either way. Only the no-config developer
    /// mode on loopback ([`Config::developer`]) turns it on.
    pub create_users: bool,
    pub min_password_length: u32,
}

impl Default for FirstUse {
    fn default() -> Self {
        FirstUse {
            create_users: false,
            min_password_length: 7,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Dummy {
    /// If set, the one password every user must type; if unset any password works.
    pub password: Option<String>,
    /// The dummy authenticator refuses to serve on a non-loopback address unless this is true.
    pub allow_non_loopback: bool,
}

/// Failed-login throttling, per user name and per client IP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimit {
    /// Failures allowed inside `window` before further attempts are refused.
    pub attempts: u32,
    pub window: Duration,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            attempts: 5,
            window: Duration::from_secs(300),
        }
    }
}

/// Who may log in and who is an admin. Names are normalised (lowercase) when loaded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Users {
    pub admin: Vec<String>,
    /// If non-empty, only these names (and admins) may log in.
    pub allowed: Vec<String>,
    /// Never allowed to log in (TLJH calls this `banned`).
    #[serde(alias = "banned")]
    pub blocked: Vec<String>,
}

/// Per-user resource limits, enforced by the backend and exported as MEM_LIMIT / CPU_LIMIT.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub memory: Option<Size>,
    /// Fractional cores, e.g. 0.5.
    pub cpu: Option<f64>,
}

/// The built-in idle culler (TLJH's `services.cull`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cull {
    pub enabled: bool,
    /// A server idle longer than this is stopped.
    pub timeout: Duration,
    /// How often to look.
    pub every: Duration,
    /// Stop servers older than this even if active; 0 = never.
    pub max_age: Duration,
    /// Also delete users (never admins) idle past the timeout.
    pub users: bool,
    /// How many servers are stopped at once.
    pub concurrency: u32,
}

impl Default for Cull {
    fn default() -> Self {
        Cull {
            enabled: true,
            timeout: Duration::from_secs(600),
            every: Duration::from_secs(60),
            max_age: Duration::from_secs(0),
            users: false,
            concurrency: 5,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultApp {
    Jupyterlab,
    Classic,
}

impl DefaultApp {
    /// The URL path (below the server prefix) a user lands on.
    pub fn default_url(self) -> &'static str {
        match self {
            DefaultApp::Jupyterlab => "/lab",
            DefaultApp::Classic => "/tree",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserEnvironment {
    pub default_app: DefaultApp,
    /// The interpreter `orrery env install` runs pip with in the images (found on the image's
    /// `PATH`): the one Jupyter and the kernels run, e.g. `/opt/conda/bin/python`.
    pub python: String,
    /// How many generations of the software environment keep their derived images (what
    /// `orrery env rollback` can return to); older images are removed.
    pub keep: u32,
    /// A registry derived images are pushed to (`registry.example.org:5000/course`); empty:
    /// they stay on this machine, which is all the Docker backend needs.
    pub registry: String,
}

impl Default for UserEnvironment {
    fn default() -> Self {
        UserEnvironment {
            default_app: DefaultApp::Jupyterlab,
            python: "python3".into(),
            keep: 5,
            registry: String::new(),
        }
    }
}

/// Which backend runs user servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// One container per user on the local Docker engine.
    Docker,
    /// A plain process per user on this machine (JupyterHub's LocalProcessSpawner, without
    /// switching users): development and tests.
    Local,
    /// A pod per user server and per remote kernel on a Kubernetes cluster (k3s or any).
    Kubernetes,
}

impl BackendKind {
    pub const ALL: [&'static str; 3] = ["docker", "local", "kubernetes"];
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Spawner {
    pub backend: BackendKind,
    /// Give up on a server that is not ready after this long.
    pub start_timeout: Duration,
    /// A spawn request answers 202 (pending) instead of waiting longer than this.
    pub slow_spawn_timeout: Duration,
    /// Spawns in flight at once; beyond it the API answers 429 with Retry-After.
    pub concurrent_spawn_limit: u32,
    /// How often records and the backend's servers are reconciled ([`crate::spawn::reconcile`]).
    pub reconcile_interval: Duration,
    /// Servers besides the default one (`/user/<name>/<server>/`), JupyterHub's named servers.
    pub named_servers: NamedServers,
    pub local: LocalSpawner,
    /// The Docker backend's settings; the image, command, environment, home mount, port and
    /// user of servers and kernels (`image`, `allowed_images`, `cmd`, `env`, `home_mount`,
    /// `port`, `user`, `pull_policy`) are the container settings of every container backend,
    /// Kubernetes included.
    pub docker: DockerSpawner,
    pub kubernetes: KubernetesSpawner,
}

/// `spawner.named_servers`: JupyterHub's `allow_named_servers` and
/// `named_server_limit_per_user`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NamedServers {
    pub enabled: bool,
    /// Named servers one user may have running at once (the default server not counted);
    /// 0: no limit.
    pub limit_per_user: u32,
}

impl Default for Spawner {
    fn default() -> Self {
        Spawner {
            backend: BackendKind::Docker,
            start_timeout: Duration::from_secs(120),
            slow_spawn_timeout: Duration::from_secs(10),
            concurrent_spawn_limit: 100,
            reconcile_interval: Duration::from_secs(30),
            named_servers: NamedServers::default(),
            local: LocalSpawner::default(),
            docker: DockerSpawner::default(),
            kubernetes: KubernetesSpawner::default(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalSpawner {
    /// The command that starts a single-user server; default `["jupyterhub-singleuser"]`.
    pub cmd: Vec<String>,
    /// The local backend runs servers as the daemon's own user; as root that is refused unless
    /// this is set, because every user would get root's powers.
    pub allow_root: bool,
}

/// When the Docker backend pulls a server's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    /// Pull only if the image is not on this machine (the default).
    IfNotPresent,
    /// Pull before every start (picks up new versions of a tag).
    Always,
    /// Never pull; a missing image is an error (offline machines).
    Never,
}

impl PullPolicy {
    pub const ALL: [&'static str; 3] = ["if-not-present", "always", "never"];
}

/// The Docker backend: one container per user on the local engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerSpawner {
    /// Image users get unless they pick another from `allowed_images`.
    pub image: String,
    /// Images users may choose with the server's `user_options` `{"image": "..."}`.
    pub allowed_images: Vec<String>,
    /// Replaces the image's command if non-empty.
    pub cmd: Vec<String>,
    /// Extra environment for every server (the JUPYTERHUB_* variables always win).
    pub env: std::collections::BTreeMap<String, String>,
    /// Extra mounts, `SOURCE:TARGET[:ro]`; `{username}` in SOURCE is replaced.
    pub volumes: Vec<String>,
    pub pull_policy: PullPolicy,
    /// Where the user's home volume is mounted (docker-stacks: /home/jovyan).
    pub home_mount: String,
    /// Named volume for the home directory; `{username}` is replaced.
    pub home_volume: String,
    /// If set, a host directory bind-mounted as the home instead of a named volume;
    /// `{username}` is replaced. The directory is created owned by `home_uid:home_gid`.
    pub home_host_path: Option<String>,
    /// Owner given to a new host-path home (the image's user; docker-stacks: 1000:100).
    pub home_uid: u32,
    pub home_gid: u32,
    /// The bridge network Orrery owns; inter-container traffic is disabled on it.
    pub network: String,
    /// Port the single-user server listens on inside the container.
    pub port: u16,
    /// Process limit per container (fork bombs).
    pub pids_limit: i64,
    /// Capabilities added back after dropping all (none needed by docker-stacks as non-root).
    pub cap_add: Vec<String>,
    /// Run containers as this user ("uid:gid"); empty: the image's own user, which must not be
    /// root unless `allow_root` is true.
    pub user: String,
    pub allow_root: bool,
    /// Docker engine socket; empty: $DOCKER_HOST or /var/run/docker.sock.
    pub socket: String,
}

impl Default for DockerSpawner {
    fn default() -> Self {
        DockerSpawner {
            image: "quay.io/jupyter/base-notebook:latest".into(),
            allowed_images: Vec::new(),
            cmd: Vec::new(),
            env: Default::default(),
            volumes: Vec::new(),
            pull_policy: PullPolicy::IfNotPresent,
            home_mount: "/home/jovyan".into(),
            home_volume: "orrery-home-{username}".into(),
            home_host_path: None,
            home_uid: 1000,
            home_gid: 100,
            network: "orrery".into(),
            port: 8888,
            pids_limit: 1024,
            cap_add: Vec::new(),
            user: String::new(),
            allow_root: false,
            socket: String::new(),
        }
    }
}

/// How pods of the Kubernetes backend get GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KubernetesGpus {
    /// Orrery's own NVML scheduler leases units on this node (Orrery runs on the one node of
    /// a k3s cluster, with the host's PID view): pods get `runtimeClassName` and
    /// `NVIDIA_VISIBLE_DEVICES` = their leased UUIDs (`void` without a lease).
    Node,
    /// The cluster's NVIDIA device plugin places `nvidia.com/gpu` requests (multi-node, or
    /// Orrery in the cluster): reclaim then uses traffic and execution state only.
    DevicePlugin,
}

impl KubernetesGpus {
    pub const ALL: [&'static str; 2] = ["node", "device-plugin"];
}

/// The Kubernetes backend: a pod per user server and per remote kernel (kube-rs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesSpawner {
    /// The kubeconfig to use; empty: `$KUBECONFIG`, `~/.kube/config`, else the in-cluster
    /// service account (Orrery running in a pod).
    pub kubeconfig: String,
    /// The kubeconfig context; empty: its current context.
    pub context: String,
    /// Where Orrery's pods, home PVCs and kernel Secrets live.
    pub namespace: String,
    /// The address pods reach the hub's internal listener at: this node's IP when Orrery runs
    /// on a node (k3s), the internal Service's DNS name when it runs in the cluster; empty:
    /// `internal.address`.
    pub hub_address: String,
    /// Who may connect to users' pods (the NetworkPolicy's one ingress rule): a CIDR such as
    /// "10.0.0.5/32" (Orrery on a node); empty: `hub_address`/32 when it is an IP. With
    /// `hub_pod_labels` set, those pods instead (Orrery in the cluster).
    pub hub_cidr: String,
    /// The labels of Orrery's own pod when it runs in the cluster (NetworkPolicy peer).
    pub hub_pod_labels: std::collections::BTreeMap<String, String>,
    /// Storage class of home PVCs; empty: the cluster's default (k3s: local-path).
    pub storage_class: String,
    /// Size of a new home PVC.
    pub home_size: String,
    /// `ReadWriteOnce` (one node mounts a home) or `ReadWriteMany` (kernels on other nodes
    /// than their user's server share the home; needs a class that offers it, e.g. NFS).
    pub home_access_mode: String,
    /// Secrets (in `namespace`) pods pull images with.
    pub image_pull_secrets: Vec<String>,
    pub gpus: KubernetesGpus,
    /// The RuntimeClass of pods holding leased GPUs (`gpus = "node"`).
    pub runtime_class: String,
}

impl Default for KubernetesSpawner {
    fn default() -> Self {
        KubernetesSpawner {
            kubeconfig: String::new(),
            context: String::new(),
            namespace: "default".into(),
            hub_address: String::new(),
            hub_cidr: String::new(),
            hub_pod_labels: Default::default(),
            storage_class: String::new(),
            home_size: "10Gi".into(),
            home_access_mode: "ReadWriteOnce".into(),
            image_pull_secrets: Vec::new(),
            gpus: KubernetesGpus::Node,
            runtime_class: "nvidia".into(),
        }
    }
}

/// Remote kernels: with `remote = true` each user's Jupyter Server runs in gateway mode and
/// Orrery starts every kernel in its own container (Docker backend).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Kernels {
    pub remote: bool,
    /// A kernel idle longer than this loses its container (it stays listed); 0 = never.
    pub idle_timeout: Duration,
    /// How often idle kernels are looked for.
    pub cull_interval: Duration,
    /// Most kernels one user may have at once (reclaimed ones included); 0 = no limit. Each is a
    /// container, and code in a notebook can ask for kernels in a loop.
    pub max_per_user: u32,
    /// Kernelspecs offered to users; none: one `python3` spec on the server image.
    pub specs: Vec<KernelSpec>,
}

impl Default for Kernels {
    fn default() -> Self {
        Kernels {
            remote: false,
            idle_timeout: Duration::from_secs(0),
            cull_interval: Duration::from_secs(60),
            max_per_user: 10,
            specs: Vec::new(),
        }
    }
}

impl Kernels {
    /// The specs in effect: the configured ones, or the default `python3`.
    pub fn effective_specs(&self) -> Vec<KernelSpec> {
        if self.specs.is_empty() {
            vec![KernelSpec::default()]
        } else {
            self.specs.clone()
        }
    }
}

/// How a kernel is interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InterruptMode {
    /// SIGINT to the kernel's container.
    Signal,
    /// `interrupt_request` on the control channel.
    Message,
}

impl InterruptMode {
    pub const ALL: [&'static str; 2] = ["signal", "message"];
    pub fn as_str(self) -> &'static str {
        match self {
            InterruptMode::Signal => "signal",
            InterruptMode::Message => "message",
        }
    }
}

/// One kernelspec (`[[kernels.specs]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KernelSpec {
    pub name: String,
    pub display_name: String,
    pub language: String,
    /// Image of the kernel's container; empty: `spawner.docker.image`.
    pub image: String,
    /// The kernel's command; `{connection_file}` is replaced by the connection file's path.
    pub argv: Vec<String>,
    pub env: std::collections::BTreeMap<String, String>,
    /// Fractional cores; none: unlimited.
    pub cpu: Option<f64>,
    pub memory: Option<Size>,
    /// Whole GPU units (GPUs, or MIG devices) the kernel holds while it runs; all or none.
    pub gpus: u32,
    /// Only units whose model contains this (e.g. `H200`).
    pub gpu_model: Option<String>,
    /// Only MIG devices of this profile (e.g. `1g.18gb`).
    pub mig_profile: Option<String>,
    /// Under `gpu.policy = "shared"`: the GPU memory this kernel may use on its unit (its
    /// processes' together, as NVML counts them); unset: the unit's memory divided by
    /// `gpu.shared.max_per_unit`. Advisory: over it, the kernel is warned, then stopped.
    pub gpu_memory: Option<Size>,
    /// Overrides `kernels.idle_timeout` for this spec.
    pub idle_timeout: Option<Duration>,
    /// If non-empty (either list), only these users / members of these groups see the spec.
    pub allowed_users: Vec<String>,
    pub allowed_groups: Vec<String>,
    pub interrupt_mode: InterruptMode,
}

impl Default for KernelSpec {
    fn default() -> Self {
        KernelSpec {
            name: "python3".into(),
            display_name: "Python 3".into(),
            language: "python".into(),
            image: String::new(),
            argv: [
                "python",
                "-m",
                "ipykernel_launcher",
                "-f",
                "{connection_file}",
            ]
            .map(String::from)
            .to_vec(),
            env: Default::default(),
            cpu: None,
            memory: None,
            gpus: 0,
            gpu_model: None,
            mig_profile: None,
            gpu_memory: None,
            idle_timeout: None,
            allowed_users: Vec::new(),
            allowed_groups: Vec::new(),
            interrupt_mode: InterruptMode::Signal,
        }
    }
}

/// A service declared in config: a name, the token it authenticates with, and its scopes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Service {
    pub name: String,
    /// The token the service sends. Stored only hashed in the state database.
    pub api_token: String,
    /// A file holding the token instead (read when the config is loaded; only root need read
    /// it), so the config file holds no secret.
    pub api_token_file: String,
    /// Scopes granted to the token, e.g. `["list:users", "read:users:activity", ...]`.
    pub scopes: Vec<String>,
    /// If set, the service may log users in through the hub's OAuth provider
    /// (client id `service-<name>`, this exact redirect URI).
    pub oauth_redirect_uri: Option<String>,
}

/// GPUs (`[gpu]`): Orrery reads them through NVML and never changes their settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gpu {
    /// The NVML library to load: the NVIDIA driver installs `libnvidia-ml.so.1` (the name
    /// without `.1` exists only with development packages). A path, or a name the loader finds.
    pub nvml_library: String,
    /// If not empty, the only GPUs (UUIDs, `MIG-…` UUIDs or indexes) Orrery hands out; the
    /// others are left alone for other uses of the machine.
    pub devices: Vec<String>,
    pub quota: GpuQuota,
    /// A GPU kernel idle this long (not executing, no execute or comm traffic, and its
    /// processes at 0 % GPU utilization) gives its units back at once when another kernel
    /// waits for one: its container is reclaimed, and its next execute re-creates it.
    pub idle_after: Duration,
    /// A GPU kernel idle this long gives its units back even when nobody waits (its
    /// notebooks are told 5 minutes before). 0: never (only `kernels.idle_timeout` applies).
    pub idle_timeout: Duration,
    /// A kernel waiting for a GPU this long stops waiting: its held cells are answered with
    /// a message saying so, and its next execute queues again. 0: wait as long as it takes.
    pub queue_timeout: Duration,
    /// Groups with their own standing for GPUs (`[[gpu.groups]]`): a place in the queue
    /// before the fewer-GPUs rule, and their own quota.
    pub groups: Vec<GpuGroup>,
    /// Whether a unit goes to one kernel at a time (`exclusive`) or to up to
    /// `gpu.shared.max_per_unit` kernels, each within a GPU memory budget (`shared`).
    pub policy: GpuPolicy,
    pub shared: GpuShared,
}

/// How units are handed out (`gpu.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GpuPolicy {
    /// One kernel per unit: the hardware keeps kernels apart.
    #[default]
    Exclusive,
    /// Several kernels per unit, each watched against its GPU memory budget (advisory: no
    /// hardware isolation between them).
    Shared,
}

/// `[gpu.shared]`: the shared policy's knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GpuShared {
    /// Kernels that may hold one unit at once.
    pub max_per_unit: u32,
    /// How long a kernel may stay over its GPU memory budget after the notice before it is
    /// stopped.
    pub grace: Duration,
}

impl Default for GpuShared {
    fn default() -> Self {
        GpuShared {
            max_per_unit: 2,
            grace: Duration::from_secs(120),
        }
    }
}

/// A group's standing for GPUs (`[[gpu.groups]]`). A user in several groups gets the highest
/// priority and the highest quota among them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct GpuGroup {
    /// The group (from `[[groups]]` or the API).
    pub name: String,
    /// Waiting kernels of members are served before those of lower priority (0 for users in
    /// no such group); within one priority the user holding fewer units goes first.
    pub priority: i32,
    /// Units a member's kernels may hold together, instead of `gpu.quota.per_user`.
    pub quota: Option<u32>,
}

impl Default for Gpu {
    fn default() -> Self {
        Gpu {
            nvml_library: "libnvidia-ml.so.1".into(),
            devices: Vec::new(),
            quota: GpuQuota::default(),
            idle_after: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(3600),
            queue_timeout: Duration::from_secs(1800),
            groups: Vec::new(),
            policy: GpuPolicy::Exclusive,
            shared: GpuShared::default(),
        }
    }
}

/// How many GPU units one user may hold at once (`[gpu.quota]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GpuQuota {
    /// Units held by all of a user's kernels together; a kernel that would go beyond is
    /// refused with the quota and what the user holds. 0: no GPUs for anyone.
    pub per_user: u32,
}

impl Default for GpuQuota {
    fn default() -> Self {
        GpuQuota { per_user: 1 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Logging {
    /// tracing filter, e.g. `info` or `orrery=debug,info`.
    pub level: String,
}

impl Default for Logging {
    fn default() -> Self {
        Logging {
            level: "info".into(),
        }
    }
}
