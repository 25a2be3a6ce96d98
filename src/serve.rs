//! `orrery serve`: start the daemon, run until a signal, shut down explicitly.
//!
//! Startup order: open state (refusing damaged or newer state), check the authenticator against
//! the listen address, write the control token, build the hub (and the services it owns),
//! re-adopt running servers, bind the public and internal listeners, then start the background
//! loops (culler, the reconcile loop, expiry sweeper, the gateway's kernel monitor and
//! culler).
//!
//! Shutdown is explicit: SIGTERM/SIGINT cancel one token that every loop and listener watches;
//! the listeners stop accepting and let requests in flight finish; every tracked task is awaited
//! (at most [`SHUTDOWN_GRACE`]) before the last flush of the state. Spawns in flight are not
//! waited for: their containers keep running and the next start's reconcile adopts them. User
//! servers and kernels keep running too. SIGHUP reloads the config.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth;
use crate::config::{AuthType, BackendKind, ConfigSource, LoadedConfig};
use crate::hub::Hub;
use crate::spawner::{docker::DockerBackend, local::LocalBackend, Backend};
use crate::state::{StateError, Store};
use crate::{app, cull, files, gateway, reload, scheme, secrets, spawn, tls};

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("{0}")]
    State(#[from] StateError),
    #[error("{0}")]
    Refused(String),
    #[error("cannot listen on {addr}: {source}. Is another program (or another orrery) using the port? Choose another with `orrery config set {key} PORT`")]
    Bind {
        addr: SocketAddr,
        key: &'static str,
        source: std::io::Error,
    },
    #[error("cannot write the control token {path}: {source}")]
    ControlToken {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// How long shutdown waits for the tracked tasks before the final flush; well inside the
/// unit's `TimeoutStopSec`.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The file the CLI reads to authenticate `config reload` and `users` against the daemon.
pub fn control_token_path(state: &Path) -> PathBuf {
    state.join("control.token")
}

/// Where the running daemon says where it listens: the CLI must still find it after
/// `config set http.port …` and before the restart that applies the new port.
pub fn daemon_info_path(state: &Path) -> PathBuf {
    state.join("daemon.json")
}

/// `notices` are the upgrade notices the daemon logged at start, for `orrery doctor` to show
/// while the daemon holds the state database.
fn write_daemon_info(state: &Path, api: &str, notices: &[String]) -> std::io::Result<()> {
    let body = serde_json::json!({"pid": std::process::id(), "api": api, "notices": notices});
    files::write_atomically(&daemon_info_path(state), body.to_string().as_bytes(), 0o644)
}

fn write_control_token(state: &Path) -> Result<String, ServeError> {
    let path = control_token_path(state);
    let token = secrets::new_token();
    files::write_atomically(&path, token.as_bytes(), 0o600)
        .map_err(|source| ServeError::ControlToken { path, source })?;
    Ok(secrets::hash_token(&token))
}

fn parse_addr(address: &str) -> Result<IpAddr, ServeError> {
    if address.is_empty() {
        return Ok(IpAddr::from([0, 0, 0, 0]));
    }
    address.parse().map_err(|_| {
        ServeError::Refused(format!(
            "http.address {address:?} is not an IP address; use e.g. 0.0.0.0 or 127.0.0.1"
        ))
    })
}

async fn bind(addr: SocketAddr, key: &'static str) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, key, source })
}

pub async fn run(loaded: LoadedConfig) -> Result<(), ServeError> {
    let cfg = loaded.config.clone();
    let state_path = loaded.state_path();
    // One TLS crypto provider for the process (the listener and the ACME client).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let public_ip = parse_addr(&cfg.http.address)?;
    if cfg.auth.kind == AuthType::Dummy {
        auth::dummy::check_bind(public_ip, cfg.auth.dummy.allow_non_loopback)
            .map_err(ServeError::Refused)?;
    }
    let store = Store::open(&state_path)?;
    let notices: Vec<String> =
        auth::signup::upgrade_notice(&loaded, store.created_with_open_signup()?)
            .into_iter()
            .collect();
    let control_hash = write_control_token(&state_path)?;
    let backend: Arc<dyn Backend> = match cfg.spawner.backend {
        BackendKind::Docker => Arc::new(DockerBackend::new(
            &cfg.spawner.docker,
            &store.instance_id()?,
        )),
        BackendKind::Local => Arc::new(LocalBackend::new(
            cfg.spawner.local.cmd.clone(),
            cfg.spawner.local.allow_root,
        )),
        BackendKind::Kubernetes => Arc::new(crate::spawner::kubernetes::KubernetesBackend::new(
            &cfg,
            &store.instance_id()?,
        )),
    };
    let config_path = match &loaded.source {
        ConfigSource::File(p) => Some(p.clone()),
        ConfigSource::Defaults => None,
    };
    let hub = Arc::new(Hub::new(
        cfg.clone(),
        config_path,
        store,
        backend.clone(),
        control_hash,
    ));
    reload::sync_services(&hub)?;
    reload::sync_groups(&hub)?;

    let public_addr = SocketAddr::new(public_ip, cfg.http.port);
    let public = bind(public_addr, "http.port").await?;
    let router = app::router(hub.clone());
    // The internal listener also serves the kernel gateway (`<base_url>hub/gateway`), which only
    // user servers call; it is never reachable on the public listener. Forwarded headers are
    // believed from trusted proxies only, on every listener.
    let internal_router = router
        .clone()
        .merge(gateway::router(hub.gateway.clone()))
        .layer(axum::middleware::from_fn_with_state(
            hub.shared_config(),
            scheme::plain,
        ));
    // HTTPS: a certificate from files (checked now: a broken pair is refused at start) or
    // from ACME (obtained in the background; the HTTP port serves until it is there).
    let https = if cfg.https.enabled {
        if let (Some(cert), Some(key)) = (&cfg.https.tls.cert, &cfg.https.tls.key) {
            tls::files::load(&hub.tls, cert, key).map_err(|e| {
                ServeError::Refused(format!(
                    "https.tls: {e}. Fix the files, or set https.enabled false"
                ))
            })?;
        }
        let addr = SocketAddr::new(public_ip, cfg.https.port);
        Some(bind(addr, "https.port").await?)
    } else {
        None
    };
    let http_side = tls::redirect::HttpSide {
        config: hub.shared_config(),
        certs: hub.tls.clone(),
        challenges: hub.acme_challenges.clone(),
    };
    let tls_router = router
        .clone()
        .layer(axum::middleware::from_fn(tls::redirect::hsts))
        .layer(axum::middleware::from_fn_with_state(
            hub.shared_config(),
            scheme::tls,
        ));
    let router = router
        .layer(axum::middleware::from_fn_with_state(
            hub.shared_config(),
            scheme::plain,
        ))
        .layer(axum::middleware::from_fn_with_state(
            http_side,
            tls::redirect::middleware,
        ));
    // Every loop and listener ends when `stop` is cancelled; `tasks` is awaited before the
    // final flush.
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();

    // The backend gets ready (for Docker: the engine answers, the network exists), then the
    // internal listener binds where user servers can reach it and running servers are
    // re-adopted. If the engine is down this is retried in the background: the hub still serves
    // logins and the API, and spawns answer "not available" until it is back.
    match tokio::time::timeout(Duration::from_secs(15), backend.prepare()).await {
        Ok(Ok(ip)) => {
            let (listener, addr) = bind_internal(&cfg, ip).await?;
            adopt(&hub, addr).await?;
            tasks.spawn(serve_internal(
                listener,
                internal_router.clone(),
                stop.clone(),
            ));
        }
        Ok(Err(e)) => {
            tracing::warn!(backend = backend.name(), error = %e, "backend not ready; retrying in the background");
            tasks.spawn(prepare_later(
                hub.clone(),
                cfg.clone(),
                internal_router.clone(),
                stop.clone(),
            ));
        }
        Err(_) => {
            tracing::warn!(
                backend = backend.name(),
                "backend not ready after 15 s; retrying in the background"
            );
            tasks.spawn(prepare_later(
                hub.clone(),
                cfg.clone(),
                internal_router.clone(),
                stop.clone(),
            ));
        }
    }
    if let Some(listener) = https {
        if cfg.https.uses_files() {
            tasks.spawn(tls::files::watch(
                hub.tls.clone(),
                hub.shared_config(),
                stop.clone(),
            ));
        } else {
            tasks.spawn(tls::acme::run(
                hub.tls.clone(),
                hub.acme_challenges.clone(),
                hub.shared_config(),
                state_path.clone(),
                stop.clone(),
            ));
        }
        let local = listener.local_addr()?;
        let tls_listener = tls::listener::TlsListener::new(listener, hub.tls.clone());
        tasks.spawn(tls::listener::serve(
            tls_listener,
            tls_router,
            stop.clone(),
            SHUTDOWN_GRACE,
        ));
        tracing::info!(%local, "HTTPS listener up");
    }
    tasks.spawn(cull::run(hub.clone(), stop.clone()));
    tasks.spawn(housekeeping(hub.clone(), stop.clone()));
    tasks.spawn(reconcile_loop(hub.clone(), stop.clone()));
    hub.gateway.run_loops(&tasks, &stop);

    let public_local = public.local_addr()?;
    let shown_host = if public_ip.is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        public_ip.to_string()
    };
    let url = format!(
        "http://{shown_host}:{}{}hub/",
        public_local.port(),
        cfg.base_url
    );
    match &loaded.source {
        ConfigSource::File(p) => tracing::info!(config = %p.display(), "configuration loaded"),
        ConfigSource::Defaults => tracing::info!("no config file: running on embedded defaults (create one with `orrery config set KEY VALUE`)"),
    }
    tracing::info!(state = %state_path.display(), backend = backend.name(), "state opened");
    let min = cfg.auth.firstuse.min_password_length;
    let how = match cfg.auth.kind {
        AuthType::Firstuse if cfg.auth.firstuse.create_users => {
            let why = match loaded.source {
                ConfigSource::Defaults => "open sign-up: the no-config developer mode on loopback",
                ConfigSource::File(_) => "open sign-up: auth.firstuse.create_users is true",
            };
            format!("log in with any new user name and a password of at least {min} characters: the first password used becomes that user's password ({why})")
        }
        AuthType::Firstuse => format!("sign-up is closed: users an admin added (orrery users add NAME) and the names in users.admin and users.allowed set their password (at least {min} characters) at first login"),
        AuthType::Native => "log in with a user an admin created (orrery users add NAME --password)".to_string(),
        AuthType::Dummy => "log in with any user name (dummy authenticator: testing only)".to_string(),
        AuthType::Ldap => format!("log in with an account of the LDAP directory {}", cfg.auth.ldap.url),
        AuthType::Oidc => format!("log in through the OpenID provider {}", cfg.auth.oidc.issuer),
        AuthType::Github => format!("log in with a GitHub account ({})", cfg.auth.github.github_url),
    };
    tracing::info!("Orrery is listening on {url} ({public_local}); {how}");
    for notice in &notices {
        tracing::warn!("{notice}");
    }
    for warning in crate::config::load::warnings(&cfg) {
        tracing::warn!("{warning}");
    }
    if !cfg.http.is_loopback() && !cfg.https.enabled {
        tracing::warn!(
            "plain HTTP on a network address: passwords travel unencrypted; set https.enabled \
             (with https.letsencrypt.domains or https.tls.*), or put a TLS reverse proxy in \
             front and set http.address 127.0.0.1 (README: \"HTTPS\")"
        );
    }
    eprintln!(
        "Orrery {} is listening on {url}\n  {how}",
        crate::version::version()
    );

    let loopback = if public_ip.is_unspecified() {
        "127.0.0.1".to_string()
    } else if public_ip.is_ipv6() {
        format!("[{public_ip}]")
    } else {
        public_ip.to_string()
    };
    write_daemon_info(
        &state_path,
        &format!(
            "http://{loopback}:{}{}hub/api",
            public_local.port(),
            cfg.base_url
        ),
        &notices,
    )?;

    tasks.spawn(crate::systemd::watchdog(stop.clone()));
    crate::systemd::ready(&format!("serving on {url}"));
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let reload_hub = hub.clone();
    let reload_stop = stop.clone();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                got = hup.recv() => if got.is_none() { return },
                _ = reload_stop.cancelled() => return,
            }
            crate::systemd::reloading();
            match reload::reload(&reload_hub).await {
                Ok(r) => {
                    tracing::info!(changed = ?r.changed, needs_restart = ?r.needs_restart, "SIGHUP: configuration reloaded")
                }
                Err(e) => tracing::error!(error = %e, "SIGHUP: configuration NOT reloaded"),
            }
            crate::systemd::ready("serving; configuration reloaded");
        }
    });
    let shutdown = {
        let stop = stop.clone();
        async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("shutting down: finishing requests in flight");
            crate::systemd::stopping();
            stop.cancel();
        }
    };
    let public_server = axum::serve(
        nodelay(public),
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown);
    public_server.await?;
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "background tasks still running after {} s; flushing state without them",
            SHUTDOWN_GRACE.as_secs()
        );
    }
    hub.store.flush().await?;
    let _ = std::fs::remove_file(daemon_info_path(&state_path));
    tracing::info!(
        "state flushed; user servers keep running and will be re-adopted on the next start"
    );
    Ok(())
}

/// Accepted connections send small writes at once. Without TCP_NODELAY, Nagle's algorithm
/// holds a proxied WebSocket message until the peer's delayed ACK (~40 ms on Linux): every
/// kernel message in JupyterLab paid that.
fn nodelay(
    listener: TcpListener,
) -> axum::serve::TapIo<TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt;
    fn set(tcp: &mut tokio::net::TcpStream) {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    }
    listener.tap_io(set as fn(&mut tokio::net::TcpStream))
}

/// Bind the internal listener: `internal.address` if set, else where the backend said.
async fn bind_internal(
    cfg: &crate::config::Config,
    prepared: IpAddr,
) -> Result<(TcpListener, SocketAddr), ServeError> {
    let ip = if cfg.internal.address.is_empty() {
        prepared
    } else {
        parse_addr(&cfg.internal.address)?
    };
    let listener = bind(SocketAddr::new(ip, cfg.internal.port), "internal.port").await?;
    let addr = listener.local_addr()?;
    tracing::info!(internal = %addr, "internal API listener (for user servers)");
    Ok((listener, addr))
}

/// Tell spawns where servers reach the hub, then re-adopt what the backend still runs.
async fn adopt(hub: &Arc<Hub>, internal: SocketAddr) -> Result<(), ServeError> {
    if let Some(base) = hub.backend.hub_api_base(internal.port()) {
        hub.set_internal_api_base(base);
    }
    spawn::reconcile(hub).await?;
    // Kernels after servers: a kernel is taken back only if its user's server still runs.
    hub.gateway.adopt().await;
    Ok(())
}

async fn serve_internal(listener: TcpListener, router: axum::Router, stop: CancellationToken) {
    let server = axum::serve(
        nodelay(listener),
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { stop.cancelled().await });
    if let Err(e) = server.await {
        tracing::error!(error = %e, "internal listener failed");
    }
}

/// Retry the backend's preparation until it works (or the daemon stops), then serve.
async fn prepare_later(
    hub: Arc<Hub>,
    cfg: crate::config::Config,
    router: axum::Router,
    stop: CancellationToken,
) {
    let mut wait = Duration::from_secs(2);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
        let ip = match hub.backend.prepare().await {
            Ok(ip) => ip,
            Err(e) => {
                tracing::warn!(error = %e, "backend still not ready");
                wait = (wait * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        match bind_internal(&cfg, ip).await {
            Ok((listener, addr)) => {
                if let Err(e) = adopt(&hub, addr).await {
                    tracing::error!(error = %e, "re-adopting servers failed");
                }
                tracing::info!(backend = hub.backend.name(), "backend ready");
                serve_internal(listener, router, stop).await;
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot bind the internal listener; retrying");
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Periodic upkeep: drop expired sessions and OAuth codes (every 30 s).
async fn housekeeping(hub: Arc<Hub>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            _ = stop.cancelled() => return,
        }
        let now = chrono::Utc::now();
        let _ = hub.store.purge_expired_sessions(now);
        let _ = hub.store.purge_expired_codes(now);
    }
}

/// The reconcile loop: records and the backend's servers made to agree every
/// `spawner.reconcile_interval` (re-read each round, so a reload applies).
async fn reconcile_loop(hub: Arc<Hub>, stop: CancellationToken) {
    let mut reconciler = spawn::Reconciler::default();
    loop {
        let every = hub.config().spawner.reconcile_interval.as_std();
        tokio::select! {
            _ = tokio::time::sleep(every.max(Duration::from_secs(1))) => {}
            _ = stop.cancelled() => return,
        }
        if let Err(e) = reconciler.pass(&hub, spawn::Pass::Periodic).await {
            tracing::warn!(error = %e, "reconciling servers failed");
        }
    }
}
