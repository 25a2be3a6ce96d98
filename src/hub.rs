//! The hub: the state every request handler shares, and the owner of the services.
//!
//! It holds the current configuration (swapped whole on reload), the state store, the login
//! throttle, and the services below it: metrics, activity, the forwarder to users' servers, the
//! spawner backend, spawn progress and the kernel gateway. Services never reach back into the
//! hub; they get what they need (a config handle, the store, metrics…) when they are built
//! here. The hub answers the two questions every request asks: *who is this*
//! ([`Hub::principal_for_token`], [`Hub::principal_for_session`]) and *what may they do*
//! ([`Principal::scopes`]: the built-in roles plus the config's `[[roles]]`, read from the
//! current config at each request, so a reload changes them at once).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use crate::activity::Activity;
use crate::config::SharedConfig;
use crate::forward::Forwarder;
use crate::gateway::containers::Containers;
use crate::gateway::local::LocalKernels;
use crate::gateway::{Gateway, KernelRuntime};

use chrono::{DateTime, Utc};

use crate::config::{BackendKind, Config};
use crate::metrics::Metrics;
use crate::progress::Spawns;
use crate::ratelimit::RateLimiter;
use crate::roles;
use crate::scopes::ScopeSet;
use crate::secrets;
use crate::spawner::Backend;
use crate::state::{StateError, Store, TokenKind, TokenOwner, TokenRecord, UserRecord};

/// A token a config-declared service authenticates with.
#[derive(Debug, Clone)]
pub struct ServiceToken {
    pub name: String,
    pub scopes: Vec<String>,
}

/// Who is making a request, and with which powers.
#[derive(Debug, Clone)]
pub struct Principal {
    pub kind: PrincipalKind,
    /// The caller's effective scopes (token scopes ∩ owner's scopes).
    pub scopes: ScopeSet,
    /// Present when the caller used an API token.
    pub token_id: Option<String>,
    /// Present when the caller used a browser session.
    pub session_id: Option<String>,
}

#[derive(Debug, Clone)]
pub enum PrincipalKind {
    User(UserRecord),
    Service(String),
    /// `orrery` CLI on this machine, via the control token in the state directory.
    Control,
}

impl Principal {
    pub fn user(&self) -> Option<&UserRecord> {
        match &self.kind {
            PrincipalKind::User(u) => Some(u),
            _ => None,
        }
    }

    pub fn name(&self) -> &str {
        match &self.kind {
            PrincipalKind::User(u) => &u.name,
            PrincipalKind::Service(s) => s,
            PrincipalKind::Control => "orrery-cli",
        }
    }
}

pub struct Hub {
    /// Current configuration; replaced as a whole by reload so readers see one version.
    config: SharedConfig,
    /// The file the configuration came from (None: embedded defaults). Reload re-reads it.
    pub config_path: Option<PathBuf>,
    pub store: Store,
    pub limiter: RateLimiter,
    pub metrics: Arc<Metrics>,
    /// When users and servers were last used (proxy, gateway, activity API; read by the culler).
    pub activity: Arc<Activity>,
    /// The HTTP client to users' servers (the proxy's and the gateway's).
    pub forward: Arc<Forwarder>,
    /// Visitors of shared servers and their open sockets, which a revocation closes.
    pub visits: Arc<crate::visits::Visits>,
    pub backend: Arc<dyn Backend>,
    pub spawns: Spawns,
    /// The kernel gateway (remote kernels); stopping a server deletes that user's kernels.
    pub gateway: Arc<Gateway>,
    /// The HTTPS certificate served (files or ACME) and what is known about it.
    pub tls: Arc<crate::tls::Certs>,
    /// ACME HTTP-01 challenges being validated, answered on the HTTP port.
    pub acme_challenges: Arc<crate::tls::acme::Challenges>,
    /// OpenID Connect logins in progress and the provider's discovery document
    /// (`auth.type = "oidc"`).
    pub oidc: Arc<crate::providers::oidc::OidcClient>,
    /// GitHub logins in progress (`auth.type = "github"`).
    pub github: Arc<crate::providers::github::GithubClient>,
    /// SHA-256 of each config service token → the service; rebuilt on reload.
    service_tokens: RwLock<HashMap<String, ServiceToken>>,
    /// SHA-256 of the control token written to `<state>/control.token` at startup.
    control_token_hash: String,
    /// Base URL user servers reach the hub at (`http://<internal listener>`), set once the
    /// internal listener is bound.
    internal_api: std::sync::OnceLock<String>,
}

/// Token use is recorded at most this often per token, to keep writes off the hot path.
const TOKEN_TOUCH_EVERY_SECS: i64 = 60;

impl Hub {
    pub fn new(
        config: Config,
        config_path: Option<PathBuf>,
        store: Store,
        backend: Arc<dyn Backend>,
        control_token_hash: String,
    ) -> Hub {
        let config_uses_files = config.https.uses_files();
        let config = SharedConfig::new(config);
        let metrics = Arc::new(Metrics::default());
        let activity = Arc::new(Activity::new(store.clone()));
        let forward = Arc::new(Forwarder::default());
        // Kernels run where the servers do: in containers with the Docker backend, as
        // processes on this machine with the local one.
        let runtime: Arc<dyn KernelRuntime> = match config.get().spawner.backend {
            BackendKind::Docker => Arc::new(Containers::new(
                &config.get().spawner.docker.socket,
                store.instance_id().unwrap_or_default(),
            )),
            BackendKind::Local => Arc::new(LocalKernels::new(store.path())),
            // Pods, through a connection of their own to the same cluster.
            BackendKind::Kubernetes => Arc::new(crate::gateway::pods::Pods::new(Arc::new(
                crate::spawner::kubernetes::cluster::Cluster::new(
                    &config.get().spawner.kubernetes,
                    &store.instance_id().unwrap_or_default(),
                ),
            ))),
        };
        let gateway = Gateway::new(crate::gateway::Services {
            runtime,
            config: config.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            activity: activity.clone(),
            forward: forward.clone(),
        });
        let hub = Hub {
            config,
            config_path,
            store,
            limiter: RateLimiter::default(),
            metrics,
            activity,
            forward,
            visits: Arc::default(),
            backend,
            spawns: Spawns::default(),
            gateway,
            tls: crate::tls::Certs::new(if config_uses_files { "files" } else { "acme" }),
            acme_challenges: Arc::default(),
            oidc: Arc::default(),
            github: Arc::default(),
            service_tokens: RwLock::new(HashMap::new()),
            control_token_hash,
            internal_api: std::sync::OnceLock::new(),
        };
        hub.rebuild_service_tokens();
        hub
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.get()
    }

    /// The live configuration, for services that read it as it changes.
    pub fn shared_config(&self) -> SharedConfig {
        self.config.clone()
    }

    pub fn set_config(&self, config: Config) {
        self.config.set(config);
        self.rebuild_service_tokens();
    }

    fn rebuild_service_tokens(&self) {
        let cfg = self.config();
        let map = cfg
            .services
            .iter()
            .filter(|s| !s.api_token.is_empty())
            .map(|s| {
                (
                    secrets::hash_token(&s.api_token),
                    ServiceToken {
                        name: s.name.clone(),
                        scopes: s.scopes.clone(),
                    },
                )
            })
            .collect();
        *self
            .service_tokens
            .write()
            .unwrap_or_else(|e| e.into_inner()) = map;
    }

    /// Where user servers reach the hub, e.g. `http://127.0.0.1:8081` (no path).
    pub fn internal_api_base(&self) -> Option<String> {
        self.internal_api.get().cloned()
    }

    pub fn set_internal_api_base(&self, base: String) {
        let _ = self.internal_api.set(base);
    }

    /// The hosts of per-user origins, when `http.subdomain_host` is set (validated at load).
    pub fn origins(&self) -> Option<crate::origins::Origins> {
        let cfg = self.config();
        crate::origins::Origins::parse(&cfg.http.subdomain_host, cfg.https.enabled)
            .ok()
            .flatten()
    }

    /// The path a server is served under: `<base_url>user/<name>/`, or `…/<name>/<server>/`
    /// for a named one.
    pub fn server_prefix(&self, user: &str, server: &str) -> String {
        if server.is_empty() {
            format!("{}user/{user}/", self.config().base_url)
        } else {
            format!("{}user/{user}/{server}/", self.config().base_url)
        }
    }

    /// Where `user`'s server `server` is, for links and redirects from the hub's pages: the
    /// server's absolute URL on its own origin with per-user origins, else its path.
    pub fn server_location(&self, user: &str, server: &str) -> String {
        let prefix = self.server_prefix(user, server);
        match self.origins() {
            Some(o) => format!("{}{prefix}", o.server_origin(user, server)),
            None => prefix,
        }
    }

    /// `base_url` + `hub/`, e.g. `/hub/` or `/jupyter/hub/`.
    pub fn hub_prefix(&self) -> String {
        format!("{}hub/", self.config().base_url)
    }

    pub fn is_admin(&self, user: &UserRecord) -> bool {
        user.admin || self.config().users.admin.iter().any(|a| a == &user.name)
    }

    /// The full scopes a user holds through their roles: `user` (or `admin`), and every
    /// `[[roles]]` entry naming them or one of their groups, as the config says now.
    pub fn user_scopes(&self, user: &UserRecord) -> ScopeSet {
        let mut scopes = if self.is_admin(user) {
            ScopeSet::admin_role(&user.name)
        } else {
            ScopeSet::user_role(&user.name)
        };
        let cfg = self.config();
        let groups = self.groups_of(&user.name);
        if !cfg.roles.is_empty() {
            scopes.merge(&roles::user_grants(&cfg.roles, &user.name, &groups));
        }
        // Servers shared with the user or one of their groups (JupyterHub 5's shares).
        let grants = crate::sharing::grants_for(&self.store, &user.name, &groups);
        if !grants.is_empty() {
            scopes.merge(&crate::sharing::scopes_of(&grants));
        }
        scopes
    }

    /// Whether `visitor` may open `owner`'s server `server` now: the owner, or a user whose
    /// scopes (roles, shares) grant `access:servers` on it. A store error denies.
    pub fn visitor_may_access(&self, visitor: &str, owner: &str, server: &str) -> bool {
        if visitor == owner {
            return true;
        }
        let Ok(Some(user)) = self.store.user(visitor) else {
            return false;
        };
        let scopes = self.user_scopes(&user);
        crate::sharing::may_access(&scopes, owner, &self.groups_of(owner), server)
    }

    /// A named server removed for good (JupyterHub's `remove`): its kept options and its shares
    /// go, and its guests' sockets close.
    pub fn forget_named_server(&self, user: &str, server: &str) -> Result<(), StateError> {
        self.store.update_user(user, |u| {
            u.server_options.remove(server);
        })?;
        self.store.delete_shares_of_server(user, server)?;
        self.enforce_access(user, server);
        Ok(())
    }

    /// After a share of `owner`'s server `server` was revoked (or its grantee lost it another
    /// way): close the sockets of visitors who may no longer open it. New requests are refused
    /// by the proxy's own check, which asks [`Hub::visitor_may_access`] each time.
    pub fn enforce_access(&self, owner: &str, server: &str) -> usize {
        self.visits.watch(owner, server);
        let closed = self.visits.close_where(owner, server, |visitor| {
            !self.visitor_may_access(visitor, owner, server)
        });
        if closed > 0 {
            tracing::info!(owner, server, closed, "closed revoked visitors' sockets");
        }
        closed
    }

    /// The names of a user's roles, as the user model lists them.
    pub fn user_role_names(&self, user: &UserRecord) -> Vec<String> {
        self.user_role_names_in(user, &self.groups_of(&user.name))
    }

    /// [`Hub::user_role_names`] for a user whose `groups` the caller has read already.
    pub fn user_role_names_in(&self, user: &UserRecord, groups: &[String]) -> Vec<String> {
        let mut names = vec!["user".to_string()];
        if self.is_admin(user) {
            names.push("admin".to_string());
        }
        let cfg = self.config();
        names.extend(
            roles::of_user(&cfg.roles, &user.name, groups)
                .into_iter()
                .map(str::to_string),
        );
        names
    }

    /// The scopes of a config service: its own `scopes` and those of the roles naming it.
    pub fn service_scopes(&self, name: &str, own: &[String]) -> ScopeSet {
        let mut scopes = ScopeSet::granted(own, None);
        scopes.merge(&roles::service_grants(&self.config().roles, name));
        scopes
    }

    /// Groups of a user, for `!group=` filters and roles: the store's and the config's. A
    /// store error yields none (fails closed).
    pub fn groups_of(&self, user: &str) -> Vec<String> {
        crate::groups::groups_of(&self.store, &self.config(), user)
    }

    /// Members of a group: the store's and the config's.
    pub fn members_of(&self, group: &str) -> Vec<String> {
        crate::groups::members_of(&self.store, &self.config(), group)
    }

    /// Resolve an API token to a principal. None: unknown, expired or owner gone.
    pub fn principal_for_token(&self, token: &str) -> Result<Option<Principal>, StateError> {
        let hash = secrets::hash_token(token);
        if secrets::constant_time_eq(&hash, &self.control_token_hash) {
            let mut scopes = ScopeSet::admin_role("orrery-cli");
            scopes.merge(&ScopeSet::default());
            return Ok(Some(Principal {
                kind: PrincipalKind::Control,
                scopes,
                token_id: None,
                session_id: None,
            }));
        }
        if let Some(svc) = self
            .service_tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
            .cloned()
        {
            // Checked when the config was read; scopes Orrery does not implement grant nothing.
            let scopes = self.service_scopes(&svc.name, &svc.scopes);
            return Ok(Some(Principal {
                kind: PrincipalKind::Service(svc.name),
                scopes,
                token_id: None,
                session_id: None,
            }));
        }
        let Some(rec) = self.store.token_by_hash(&hash)? else {
            return Ok(None);
        };
        let now = Utc::now();
        if rec.is_expired(now) {
            self.store.delete_token(&hash)?;
            return Ok(None);
        }
        let principal = match &rec.owner {
            TokenOwner::User(name) => {
                let Some(user) = self.store.user(name)? else {
                    return Ok(None);
                };
                let owner_scopes = self.user_scopes(&user);
                // "inherit" (the default for new tokens) means: whatever the owner holds now.
                let requested = if rec.scopes.iter().any(|s| s == "inherit") {
                    owner_scopes.clone()
                } else {
                    ScopeSet::granted(&rec.scopes, Some(&user.name))
                };
                Principal {
                    scopes: requested.intersect_resolving(&owner_scopes, &|u| self.groups_of(u)),
                    kind: PrincipalKind::User(user),
                    token_id: Some(rec.id.clone()),
                    session_id: None,
                }
            }
            TokenOwner::Service(name) => {
                let svc = self
                    .config()
                    .services
                    .iter()
                    .find(|s| &s.name == name)
                    .cloned();
                let Some(svc) = svc else { return Ok(None) };
                let owner_scopes = self.service_scopes(&svc.name, &svc.scopes);
                let requested = ScopeSet::granted(&rec.scopes, None);
                Principal {
                    scopes: requested.intersect_resolving(&owner_scopes, &|u| self.groups_of(u)),
                    kind: PrincipalKind::Service(name.clone()),
                    token_id: Some(rec.id.clone()),
                    session_id: None,
                }
            }
        };
        if rec
            .last_activity
            .is_none_or(|t| (now - t).num_seconds() >= TOKEN_TOUCH_EVERY_SECS)
        {
            self.store.touch_token(&hash, now)?;
        }
        Ok(Some(principal))
    }

    /// Resolve a browser session id (from the login cookie) to a principal.
    pub fn principal_for_session(&self, session_id: &str) -> Result<Option<Principal>, StateError> {
        let hash = secrets::hash_token(session_id);
        let Some(sess) = self.store.session(&hash)? else {
            return Ok(None);
        };
        if sess.expires_at <= Utc::now() {
            self.store.delete_session(&hash)?;
            return Ok(None);
        }
        let Some(user) = self.store.user(&sess.user)? else {
            return Ok(None);
        };
        Ok(Some(Principal {
            scopes: self.user_scopes(&user),
            kind: PrincipalKind::User(user),
            token_id: None,
            session_id: Some(session_id.to_string()),
        }))
    }

    /// Create an API token; returns the token (shown once) and its record.
    pub fn issue_token(
        &self,
        owner: TokenOwner,
        kind: TokenKind,
        scopes: Vec<String>,
        note: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(String, TokenRecord), StateError> {
        let token = secrets::new_token();
        let rec = TokenRecord {
            id: secrets::new_id("t"),
            hash: secrets::hash_token(&token),
            prefix: secrets::token_prefix(&token),
            owner,
            kind,
            scopes,
            note: note.to_string(),
            created: Utc::now(),
            expires_at,
            last_activity: None,
            oauth_client: None,
            server: None,
        };
        self.store.put_token(&rec)?;
        Ok((token, rec))
    }

    /// Record activity for a user (and their server) — timestamps only move forward.
    pub fn record_activity(
        &self,
        user: &str,
        server: Option<&str>,
        when: DateTime<Utc>,
    ) -> Result<(), StateError> {
        self.activity.record(user, server, when)
    }
}
