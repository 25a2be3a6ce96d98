//! Starting and stopping users' servers: the hub's side of the spawner contract.
//!
//! A spawn (1) mints the server's API token and registers its OAuth client
//! `jupyterhub-user-<name>` (secret = that token, redirect = `<prefix>oauth_callback`),
//! (2) asks the backend to start it with the single-user environment, (3) polls `<prefix>api`
//! until it answers below 500, and (4) marks the server ready. Progress events feed
//! `GET /hub/api/users/{name}/server/progress`. A failed or timed-out spawn is cleaned up
//! completely (token, client, record) and its reason is kept for the progress stream.
//!
//! [`Reconciler`] makes the records and what the backend runs agree: at startup (servers the
//! backend still runs are re-adopted, the rest forgotten, so nothing starts twice after a
//! restart) and every `spawner.reconcile_interval` (servers that died are forgotten, this
//! hub's containers without a record removed), never touching a spawn in flight.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::Utc;
use futures::stream::{self, Stream, StreamExt};
use thiserror::Error;
use tokio::sync::{mpsc, watch};

use crate::hub::Hub;
use crate::progress::{push, ProgressEvent, SpawnSlot};
use crate::scopes::ScopeSet;
use crate::spawner::{PollStatus, SpawnError, SpawnSpec};
use crate::state::{
    OAuthClientRecord, ServerRecord, StateError, TokenKind, TokenOwner, UserRecord,
};

#[derive(Debug, Error)]
pub enum StartError {
    #[error("{0}'s server is already running")]
    AlreadyRunning(String),
    #[error("{0}'s server is already {1}ing")]
    Pending(String, String),
    #[error("too many servers are starting right now; try again in a few seconds")]
    TooMany,
    #[error("named servers are not enabled; use the default server (\"\")")]
    NamedServers,
    #[error("{0} already runs {1} named servers, the most spawner.named_servers.limit_per_user allows; stop one first")]
    TooManyNamed(String, u32),
    /// The request's `user_options` cannot be honoured (an unknown or forbidden profile).
    #[error("{0}")]
    BadOptions(String),
    #[error("{0}")]
    NotAvailable(String),
    /// A GPU profile's units cannot be had now (quota, none free, none at all).
    #[error("{0}")]
    NoGpu(String),
    #[error("{0}")]
    Failed(String),
    /// The identity provider no longer vouches for the user (refreshed before the spawn).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    State(#[from] StateError),
}

/// How a start request ended within `slow_spawn_timeout`.
#[derive(Debug)]
pub enum StartOutcome {
    Ready,
    Pending,
}

/// Where a server is served: `<base_url>user/<name>/`, or `…/<name>/<server>/` for a named one.
pub fn server_prefix(hub: &Hub, user: &str, server: &str) -> String {
    hub.server_prefix(user, server)
}

/// What a start runs: the options (with the profile filled in), the profile and the limits.
struct Choice {
    options: serde_json::Value,
    profile: Option<crate::config::Profile>,
    memory: Option<u64>,
    cpu: Option<f64>,
    /// GPU units leased for the server (its profile's `gpus`), once leased.
    gpus: Vec<String>,
    /// Base image → the software environment's image for it, as in effect when the start
    /// began (the generation the server record notes).
    derived_images: BTreeMap<String, String>,
}

/// The options, profile and limits of a start: options that choose nothing reuse the last
/// start's (when its profile is still open to the user); the profile is checked against who
/// may choose it ([`crate::profiles`]).
fn choose(
    hub: &Hub,
    cfg: &crate::config::Config,
    user: &UserRecord,
    server_name: &str,
    requested: serde_json::Value,
) -> Result<Choice, StartError> {
    let groups = hub.groups_of(&user.name);
    let empty = match &requested {
        serde_json::Value::Null => true,
        serde_json::Value::Object(m) => m.is_empty(),
        _ => false,
    };
    let mut options = match (empty, user.server_options.get(server_name)) {
        (true, Some(last))
            if crate::profiles::choose(cfg, &user.name, &groups, last.get("profile")).is_ok() =>
        {
            last.clone()
        }
        (true, _) => serde_json::json!({}),
        (false, _) => requested,
    };
    let profile = crate::profiles::choose(cfg, &user.name, &groups, options.get("profile"))
        .map_err(|e| StartError::BadOptions(e.to_string()))?
        .cloned();
    if let (Some(p), Some(map)) = (&profile, options.as_object_mut()) {
        map.insert("profile".into(), serde_json::Value::String(p.name.clone()));
    }
    let (memory, cpu) = crate::profiles::limits(cfg, &groups, profile.as_ref());
    Ok(Choice {
        options,
        profile,
        memory,
        cpu,
        gpus: Vec::new(),
        derived_images: BTreeMap::new(),
    })
}

/// A server's OAuth client id, as JupyterHub names it.
pub fn client_id(user: &str, server: &str) -> String {
    if server.is_empty() {
        format!("jupyterhub-user-{user}")
    } else {
        format!("jupyterhub-user-{user}-{server}")
    }
}

/// Is `name` usable as a named server's name (a URL path segment of its own)?
pub fn check_server_name(name: &str) -> Result<(), StartError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !name.starts_with('-')
        // `spawn-pending/<user>/progress` is the default server's event stream.
        && name != "progress";
    if ok {
        Ok(())
    } else {
        Err(StartError::BadOptions(format!(
            "{name:?} cannot be a server name: use 1 to 63 of a-z, 0-9, - and _, not starting with -"
        )))
    }
}

/// Start `user`'s server. Returns once it is ready, failed, or `slow_spawn_timeout` passed.
pub async fn start(
    hub: &Arc<Hub>,
    user: &UserRecord,
    server_name: &str,
    user_options: serde_json::Value,
    display_name: Option<String>,
) -> Result<StartOutcome, StartError> {
    let cfg = hub.config();
    if !server_name.is_empty() {
        if !cfg.spawner.named_servers.enabled {
            return Err(StartError::NamedServers);
        }
        check_server_name(server_name)?;
        let limit = cfg.spawner.named_servers.limit_per_user;
        let named = hub
            .store
            .servers_of(&user.name)?
            .iter()
            .filter(|s| !s.name.is_empty() && s.name != server_name)
            .count();
        if limit > 0 && named >= limit as usize {
            return Err(StartError::TooManyNamed(user.name.clone(), limit));
        }
    }
    // Already running or starting: say so (400) before any limit (429), as JupyterHub does.
    // The atomic create below still settles races between concurrent requests.
    if let Some(s) = hub.store.server(&user.name, server_name)? {
        return Err(match s.pending {
            Some(p) => StartError::Pending(user.name.clone(), p),
            None => StartError::AlreadyRunning(user.name.clone()),
        });
    }
    // With an OpenID provider, its word on the user's groups and rights is fresh at each spawn
    // (profiles, quotas and shared folders depend on them).
    crate::auth::identity::refresh_before_spawn(hub, user)
        .await
        .map_err(|e| StartError::Refused(e.to_string()))?;
    let refreshed = hub.store.user(&user.name)?;
    let user = refreshed.as_ref().unwrap_or(user);
    let choice = choose(hub, &cfg, user, server_name, user_options)?;
    let user_options = choice.options.clone();
    let Some(api_base) = hub.internal_api_base() else {
        return Err(StartError::NotAvailable(format!(
            "the {} backend is not ready yet (is the Docker engine running? see `orrery doctor`); the hub keeps retrying",
            hub.backend.name()
        )));
    };
    let Some(slot) = hub
        .spawns
        .try_reserve(cfg.spawner.concurrent_spawn_limit as usize)
    else {
        return Err(StartError::TooMany);
    };
    // The software environment in effect now is the one this server gets (`orrery env`).
    let environment = hub.store.environment()?;
    // The pending record is the reservation: of two concurrent requests only one creates it.
    let record = ServerRecord {
        user: user.name.clone(),
        name: server_name.to_string(),
        url: None,
        started: None,
        last_activity: None,
        pending: Some("spawn".into()),
        ready: false,
        user_options: user_options.clone(),
        display_name,
        backend_state: serde_json::Value::Null,
        token_id: None,
        environment: environment.current,
    };
    if !hub.store.create_server(&record)? {
        return Err(
            match hub
                .store
                .server(&user.name, server_name)?
                .and_then(|s| s.pending)
            {
                Some(p) => StartError::Pending(user.name.clone(), p),
                None => StartError::AlreadyRunning(user.name.clone()),
            },
        );
    }
    // Kept for the next start that chooses nothing (JupyterHub keeps a spawner's user_options).
    hub.store.update_user(&user.name, |u| {
        u.server_options
            .insert(server_name.to_string(), choice.options.clone());
    })?;
    let mut choice = choice;
    choice.derived_images = environment.effective_images();
    // On a cluster whose device plugin places GPUs, Orrery leases none: the pod asks for them.
    let plugin_places_gpus = cfg.spawner.backend == crate::config::BackendKind::Kubernetes
        && cfg.spawner.kubernetes.gpus == crate::config::KubernetesGpus::DevicePlugin;
    if let Some(p) = choice
        .profile
        .as_ref()
        .filter(|p| p.gpus > 0 && !plugin_places_gpus)
    {
        match hub
            .gateway
            .lease_for_server(&user.name, server_name, p.gpus, p.gpu_model.clone())
        {
            Ok(units) => choice.gpus = units,
            Err(why) => {
                let _ = cleanup(hub, &user.name, server_name).await;
                return Err(StartError::NoGpu(why));
            }
        }
    }
    match prepare_and_launch(hub, user, server_name, choice, api_base, record, slot).await {
        Ok(rx) => wait_outcome(&cfg, rx).await,
        Err(e) => {
            let _ = cleanup(hub, &user.name, server_name).await;
            Err(e)
        }
    }
}

/// Mint the server's credentials, build its environment and launch the spawn task; returns the
/// channel its result arrives on. The spawn task holds `slot` until the spawn ends.
async fn prepare_and_launch(
    hub: &Arc<Hub>,
    user: &UserRecord,
    server_name: &str,
    choice: Choice,
    api_base: String,
    mut record: ServerRecord,
    slot: SpawnSlot,
) -> Result<tokio::sync::oneshot::Receiver<Result<String, StartError>>, StartError> {
    let cfg = hub.config();
    let name = user.name.clone();
    let prefix = server_prefix(hub, &name, server_name);
    let (token, token_rec) = hub.issue_token(
        TokenOwner::User(name.clone()),
        TokenKind::Server,
        ScopeSet::server_role(&name, server_name),
        "server token",
        None,
    )?;
    // With per-user origins the callback is on the server's own host, and the server sends
    // browsers to the hub's host (`JUPYTERHUB_HOST`) to authorize: JupyterHub's cross-origin flow.
    let origins = hub.origins();
    let public_url = match &origins {
        Some(o) => format!("{}{prefix}", o.server_origin(&name, server_name)),
        None => String::new(),
    };
    let callback = if public_url.is_empty() {
        format!("{prefix}oauth_callback")
    } else {
        format!("{public_url}oauth_callback")
    };
    // Under HTTPS on per-user hosts, the server's cookies get the `__Host-` prefix (no other
    // host, not even a sibling server, can set or overwrite them), as JupyterHub does.
    let host_prefix_cookies = origins.as_ref().is_some_and(|o| o.is_https());
    let hub_host = origins.map(|o| o.hub_origin()).unwrap_or_default();
    let access_scopes = vec![
        format!("access:servers!server={name}/{server_name}"),
        format!("access:servers!user={name}"),
    ];
    hub.store.put_oauth_client(&OAuthClientRecord {
        id: client_id(&name, server_name),
        secret_hash: token_rec.hash.clone(),
        redirect_uri: callback.clone(),
        access_scopes: access_scopes.clone(),
        user: Some(name.clone()),
        description: format!("Server at {prefix}"),
    })?;
    record.token_id = Some(token_rec.id.clone());
    hub.store.update_server(&name, server_name, |r| {
        r.token_id = Some(token_rec.id.clone())
    })?;
    hub.store.flush().await?;

    let api_url = format!("{api_base}{}hub/api", cfg.base_url);
    let scopes_json = serde_json::to_string(&access_scopes).unwrap_or_else(|_| "[]".into());
    let mut env = BTreeMap::new();
    for (k, v) in [
        ("JUPYTERHUB_API_TOKEN", token.clone()),
        ("JPY_API_TOKEN", token.clone()),
        ("JUPYTERHUB_CLIENT_ID", client_id(&name, server_name)),
        ("JUPYTERHUB_API_URL", api_url.clone()),
        (
            "JUPYTERHUB_ACTIVITY_URL",
            format!("{api_url}/users/{name}/activity"),
        ),
        ("JUPYTERHUB_BASE_URL", cfg.base_url.clone()),
        ("JUPYTERHUB_SERVICE_PREFIX", prefix.clone()),
        ("JUPYTERHUB_OAUTH_CALLBACK_URL", callback),
        ("JUPYTERHUB_OAUTH_ACCESS_SCOPES", scopes_json.clone()),
        ("JUPYTERHUB_OAUTH_SCOPES", scopes_json),
        ("JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES", "[]".into()),
        ("JUPYTERHUB_USER", name.clone()),
        ("JUPYTERHUB_SERVER_NAME", server_name.to_string()),
        ("JUPYTERHUB_HOST", hub_host),
        ("JUPYTERHUB_PUBLIC_URL", public_url),
        (
            "JUPYTERHUB_DEFAULT_URL",
            cfg.user_environment.default_app.default_url().to_string(),
        ),
        ("JUPYTERHUB_ADMIN_ACCESS", "0".into()),
    ] {
        env.insert(k.to_string(), v);
    }
    if host_prefix_cookies {
        env.insert("JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED".into(), "1".into());
    }
    if cfg.kernels.remote {
        // Gateway mode: the user's Jupyter Server sends kernel management to Orrery, which
        // starts every kernel in its own container (src/gateway/).
        let (gateway_token, mut gateway_rec) = hub.issue_token(
            TokenOwner::User(name.clone()),
            TokenKind::Gateway,
            Vec::new(),
            "kernel gateway token",
            None,
        )?;
        // The server it was made for: its kernels are that server's, deleted with it.
        gateway_rec.server = Some(server_name.to_string());
        hub.store.put_token(&gateway_rec)?;
        env.insert(
            "JUPYTER_GATEWAY_URL".into(),
            format!("{api_base}{}hub/gateway", cfg.base_url),
        );
        env.insert("JUPYTER_GATEWAY_AUTH_TOKEN".into(), gateway_token);
    }
    if let Some(m) = choice.memory {
        env.insert("MEM_LIMIT".into(), m.to_string());
    }
    if let Some(c) = choice.cpu {
        env.insert("CPU_LIMIT".into(), c.to_string());
    }
    if let Some(p) = &choice.profile {
        // The profile's variables, never over the hub's own (JUPYTERHUB_* and the rest).
        for (k, v) in &p.env {
            env.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }

    let progress = hub.spawns.begin(&name, server_name);
    push(
        &progress,
        ProgressEvent {
            progress: 0,
            message: "Server requested".into(),
            ready: false,
            failed: false,
            url: None,
        },
    );
    let (msg_tx, mut msg_rx) = mpsc::unbounded_channel::<String>();
    let spec = SpawnSpec {
        user: name.clone(),
        server_name: server_name.to_string(),
        env,
        prefix: prefix.clone(),
        user_options: choice.options,
        image: choice
            .profile
            .as_ref()
            .map(|p| p.image.clone())
            .filter(|i| !i.is_empty()),
        // The profile's volumes, then the shared volumes this user gets.
        volumes: choice
            .profile
            .as_ref()
            .map(|p| p.volumes.clone())
            .unwrap_or_default()
            .into_iter()
            .chain(if cfg.shared_volumes.is_empty() {
                Vec::new()
            } else {
                crate::config::shared_volumes_for(&cfg.shared_volumes, &name, &hub.groups_of(&name))
            })
            .collect(),
        memory_limit: choice.memory,
        cpu_limit: choice.cpu,
        gpus: choice.gpus.clone(),
        gpu_count: choice.profile.as_ref().map_or(0, |p| p.gpus),
        derived_images: choice.derived_images.clone(),
        progress: msg_tx,
        config: cfg.clone(),
    };

    // Relay backend messages into the progress stream (50% at most until ready).
    let relay = progress.clone();
    tokio::spawn(async move {
        let mut pct = 10u8;
        while let Some(m) = msg_rx.recv().await {
            push(
                &relay,
                ProgressEvent {
                    progress: pct,
                    message: m,
                    ready: false,
                    failed: false,
                    url: None,
                },
            );
            pct = (pct + 10).min(50);
        }
    });

    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let task_hub = hub.clone();
    let server = server_name.to_string();
    tokio::spawn(async move {
        let began = Instant::now();
        let result = run_spawn(&task_hub, spec, &progress).await;
        drop(slot);
        task_hub.metrics.spawn(result.is_ok(), began.elapsed());
        match &result {
            Ok(_) => {
                tracing::info!(user = %name, server = %server, took_ms = began.elapsed().as_millis() as u64, "server ready");
                let url = task_hub.server_location(&name, &server);
                push(
                    &progress,
                    ProgressEvent {
                        progress: 100,
                        message: format!("Server ready at {url}"),
                        ready: true,
                        failed: false,
                        url: Some(url.clone()),
                    },
                );
            }
            Err(e) => {
                tracing::warn!(user = %name, server = %server, error = %e, "spawn failed");
                let _ = cleanup(&task_hub, &name, &server).await;
                push(
                    &progress,
                    ProgressEvent {
                        progress: 100,
                        message: format!("Spawn failed: {e}"),
                        ready: false,
                        failed: true,
                        url: None,
                    },
                );
            }
        }
        let _ = done_tx.send(result);
    });

    Ok(done_rx)
}

/// Wait up to `slow_spawn_timeout` for the spawn task's result.
async fn wait_outcome(
    cfg: &crate::config::Config,
    done_rx: tokio::sync::oneshot::Receiver<Result<String, StartError>>,
) -> Result<StartOutcome, StartError> {
    match tokio::time::timeout(cfg.spawner.slow_spawn_timeout.as_std(), done_rx).await {
        Ok(Ok(Ok(_))) => Ok(StartOutcome::Ready),
        Ok(Ok(Err(StartError::NotAvailable(m)))) => Err(StartError::NotAvailable(m)),
        Ok(Ok(Err(e))) => Err(StartError::Failed(e.to_string())),
        Ok(Err(_)) => Err(StartError::Failed(
            "the spawn task ended unexpectedly".into(),
        )),
        Err(_) => Ok(StartOutcome::Pending),
    }
}

/// The backend start plus the readiness wait. Returns the server's public URL path.
async fn run_spawn(
    hub: &Arc<Hub>,
    spec: SpawnSpec,
    progress: &watch::Sender<Vec<ProgressEvent>>,
) -> Result<String, StartError> {
    let cfg = hub.config();
    let user = spec.user.clone();
    let server = spec.server_name.clone();
    let prefix = spec.prefix.clone();
    let deadline = Instant::now() + cfg.spawner.start_timeout.as_std();
    let started = match hub.backend.start(spec).await {
        Ok(s) => s,
        Err(SpawnError::NotAvailable(m)) => return Err(StartError::NotAvailable(m)),
        Err(SpawnError::Failed(m)) => return Err(StartError::Failed(m)),
    };
    hub.store.update_server(&user, &server, |rec| {
        rec.url = Some(started.url.clone());
        rec.backend_state = started.state.clone();
    })?;
    push(
        progress,
        ProgressEvent {
            progress: 50,
            message: "Waiting for the server to answer".into(),
            ready: false,
            failed: false,
            url: None,
        },
    );

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        // A dead container's address never refuses: don't let one probe hang for seconds.
        .connect_timeout(Duration::from_secs(1))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| StartError::Failed(e.to_string()))?;
    let check = format!("{}{}api", started.url, prefix);
    // Readiness is checked often (a tight poll adds little load but removes up to a poll
    // interval of latency from every spawn); whether the backend still runs it, less often.
    let began = Instant::now();
    let mut last_backend_poll = Instant::now();
    loop {
        if let Ok(resp) = client.get(&check).send().await {
            if resp.status().as_u16() < 500 {
                break;
            }
        }
        if last_backend_poll.elapsed() >= Duration::from_millis(500) {
            last_backend_poll = Instant::now();
            if let Ok(PollStatus::Stopped(reason)) =
                hub.backend.poll(&user, &server, &started.state).await
            {
                let _ = hub.backend.stop(&user, &server, &started.state).await;
                return Err(StartError::Failed(format!(
                    "the server stopped before it was ready: {reason}"
                )));
            }
        }
        if Instant::now() >= deadline {
            let more = hub
                .backend
                .describe_failure(&user, &server, &started.state)
                .await;
            let _ = hub.backend.stop(&user, &server, &started.state).await;
            return Err(StartError::Failed(format!(
                "the server did not answer at {check} within {} (spawner.start_timeout){more}",
                cfg.spawner.start_timeout
            )));
        }
        let wait = if began.elapsed() < Duration::from_secs(15) {
            25
        } else {
            250
        };
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
    let now = Utc::now();
    hub.store.update_server(&user, &server, |rec| {
        rec.pending = None;
        rec.ready = true;
        rec.started = Some(now);
        rec.last_activity = Some(now);
    })?;
    hub.record_activity(&user, None, now)?;
    hub.store.flush().await?;
    Ok(prefix)
}

/// Forget a server: revoke its token, its OAuth client and the tokens issued to that client,
/// and delete its remote kernels (its gateway token goes with it). The user's other servers
/// and their kernels are left alone.
async fn cleanup(hub: &Hub, user: &str, server: &str) -> Result<(), StateError> {
    hub.gateway.delete_all_of(user, server).await;
    hub.gateway.release_server_gpus(user, server);
    let owner = TokenOwner::User(user.to_string());
    if let Some(rec) = hub.store.server(user, server)? {
        if let Some(id) = &rec.token_id {
            hub.store.delete_tokens_of_where(&owner, |t| &t.id == id)?;
        }
    }
    let cid = client_id(user, server);
    hub.store
        .delete_tokens_where(|t| t.oauth_client.as_deref() == Some(cid.as_str()))?;
    hub.store.delete_tokens_of_where(&owner, |t| {
        t.kind == TokenKind::Gateway && t.server.as_deref().unwrap_or("") == server
    })?;
    hub.store.delete_oauth_client(&cid)?;
    hub.store.delete_server(user, server)?;
    hub.store.flush().await?;
    Ok(())
}

#[derive(Debug, Error)]
pub enum StopError {
    #[error("{0} has no running server")]
    NotRunning(String),
    #[error("{0}")]
    Backend(String),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Stop `user`'s server and forget it. The user's files are never touched here.
pub async fn stop(hub: &Hub, user: &str, server: &str) -> Result<(), StopError> {
    let Some(rec) = hub
        .store
        .update_server(user, server, |rec| rec.pending = Some("stop".into()))?
    else {
        return Err(StopError::NotRunning(user.to_string()));
    };
    let result = hub.backend.stop(user, server, &rec.backend_state).await;
    cleanup(hub, user, server).await?;
    tracing::info!(user, server, "server stopped");
    result.map_err(|e| StopError::Backend(e.to_string()))
}

/// Which pass of [`reconcile`] this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// At startup, before anything serves: no spawn of this process is in flight, so a
    /// pending record is a spawn the last run abandoned, and any unrecorded server is stray.
    Startup,
    /// Every `spawner.reconcile_interval`, while spawns may be in flight.
    Periodic,
}

/// What one reconcile pass leaves for the next: the unrecorded servers it saw, so that one is
/// removed only when seen so twice (a server is never removed on one glimpse).
#[derive(Debug, Default)]
pub struct Reconciler {
    unrecorded: std::collections::HashSet<String>,
}

/// How a backend's server is known between passes (its user, name and handle).
fn observed_key(o: &crate::spawner::Observed) -> String {
    format!("{}/{}/{}", o.user, o.server, o.state)
}

impl Reconciler {
    /// Compare the server records with what the backend runs, and make them agree. Idempotent:
    /// a second pass right after the first changes nothing. It never hurts work in flight:
    ///
    /// * A record whose spawn is in flight (`pending`) is left to its spawn task, except at
    ///   startup, when there is no such task (the last run's spawn was abandoned): it is
    ///   stopped and forgotten, as is a server that is running but never became ready.
    /// * A ready record whose server is gone is forgotten (token, OAuth client, record); one
    ///   whose user no longer exists is stopped and forgotten.
    /// * A server the backend runs for this hub (its instance label) with no record is
    ///   stopped: at startup at once; later only when seen so in two passes in a row, or when
    ///   it is older than `spawner.start_timeout` (no spawn takes longer).
    ///
    /// A backend that cannot answer (engine down) changes nothing; the next pass tries again.
    pub async fn pass(&mut self, hub: &Hub, pass: Pass) -> Result<(), StateError> {
        let records = hub.store.servers()?;
        for rec in &records {
            if rec.pending.is_some() && pass == Pass::Periodic {
                continue;
            }
            let running = match hub
                .backend
                .poll(&rec.user, &rec.name, &rec.backend_state)
                .await
            {
                Ok(PollStatus::Running) => true,
                Ok(PollStatus::Stopped(reason)) => {
                    if pass == Pass::Periodic {
                        tracing::warn!(user = %rec.user, %reason, "server stopped on its own");
                    }
                    false
                }
                Err(e) => {
                    tracing::warn!(user = %rec.user, error = %e, "cannot check server; keeping it");
                    continue;
                }
            };
            // The record may have changed while the backend answered (a spawn finished, a
            // stop began): act only on what is still true.
            let Some(now) = hub.store.server(&rec.user, &rec.name)? else {
                continue;
            };
            if now.pending.is_some() && pass == Pass::Periodic {
                continue;
            }
            let user_exists = hub.store.user(&rec.user)?.is_some();
            if running && now.ready && now.pending.is_none() && user_exists {
                if pass == Pass::Startup {
                    tracing::info!(user = %rec.user, server = %rec.name, "re-adopted running server");
                }
                continue;
            }
            if running {
                let _ = hub
                    .backend
                    .stop(&rec.user, &rec.name, &rec.backend_state)
                    .await;
            }
            tracing::info!(user = %rec.user, server = %rec.name, "forgetting server that is no longer running");
            cleanup(hub, &rec.user, &rec.name).await?;
        }
        let Ok(observed) = hub.backend.list().await else {
            return Ok(());
        };
        let oldest_spawn = chrono::Duration::from_std(hub.config().spawner.start_timeout.as_std())
            .unwrap_or(chrono::Duration::MAX);
        let now = Utc::now();
        let mut unrecorded = std::collections::HashSet::new();
        for o in observed {
            if hub.store.server(&o.user, &o.server)?.is_some() {
                continue;
            }
            let key = observed_key(&o);
            let old = o.created.is_some_and(|c| now - c > oldest_spawn);
            if pass == Pass::Startup || self.unrecorded.contains(&key) || old {
                tracing::info!(user = %o.user, server = %o.server, "stopping a server the hub has no record of");
                let _ = hub.backend.stop(&o.user, &o.server, &o.state).await;
            } else {
                unrecorded.insert(key);
            }
        }
        self.unrecorded = unrecorded;
        Ok(())
    }
}

/// At startup, before anything serves: [`Reconciler::pass`] with [`Pass::Startup`].
pub async fn reconcile(hub: &Hub) -> Result<(), StateError> {
    Reconciler::default().pass(hub, Pass::Startup).await
}

/// The SSE stream for a server; shared with the spawn-pending page.
pub fn progress_stream(
    hub: &Hub,
    user: &str,
    server: &str,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let prefix = hub.server_location(user, server);
    let running = hub.store.server(user, server).ok().flatten();
    let rx = hub.spawns.subscribe(user, server);
    let initial: Vec<ProgressEvent> = match (&running, &rx) {
        (Some(s), _) if s.ready => vec![ProgressEvent {
            progress: 100,
            message: format!("Server ready at {prefix}"),
            ready: true,
            failed: false,
            url: Some(prefix.clone()),
        }],
        (_, Some(rx)) => rx.borrow().clone(),
        (None, None) => vec![ProgressEvent {
            progress: 100,
            message: "No server is running or starting".into(),
            ready: false,
            failed: true,
            url: None,
        }],
        (Some(_), None) => Vec::new(),
    };
    let done = initial.iter().any(|e| e.ready || e.failed);
    let sent = initial.len();
    let head = stream::iter(initial);
    let tail = match (done, rx) {
        (false, Some(rx)) => stream::unfold(
            (rx, sent, false),
            |(mut rx, mut sent, finished)| async move {
                if finished {
                    return None;
                }
                loop {
                    let events = rx.borrow_and_update().clone();
                    if events.len() > sent {
                        let new: Vec<ProgressEvent> = events[sent..].to_vec();
                        sent = events.len();
                        let fin = new.iter().any(|e| e.ready || e.failed);
                        return Some((stream::iter(new), (rx, sent, fin)));
                    }
                    if rx.changed().await.is_err() {
                        return None;
                    }
                }
            },
        )
        .flatten()
        .boxed(),
        _ => stream::empty().boxed(),
    };
    let events = head
        .chain(tail)
        .map(|ev| Ok(Event::default().data(serde_json::to_string(&ev).unwrap_or_default())));
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
