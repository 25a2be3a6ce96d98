//! The spawner contract: how a backend starts, stops, polls and lists single-user servers.
//!
//! The hub-side flow (tokens, OAuth client, readiness, progress) lives in [`crate::spawn`]; a
//! backend only runs things. Implementations:
//! * [`local`]: a process on this machine (JupyterHub's LocalProcessSpawner, without switching
//!   users) — development and tests.
//! * [`docker`]: a container per user on the local Docker engine.
//! * [`kubernetes`]: a pod per user on a cluster (kube-rs).
//!
//! `state` is an opaque JSON handle the backend gets back after a daemon restart (a container
//! id, a pod name), and `list` feeds reconcile.

pub mod docker;
pub mod kubernetes;
pub mod local;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use futures::future::BoxFuture;
use thiserror::Error;
use tokio::sync::mpsc;

/// Everything a backend needs to start one server.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    pub user: String,
    /// "" for the default server.
    pub server_name: String,
    /// The single-user environment (JUPYTERHUB_* and friends), already complete.
    pub env: BTreeMap<String, String>,
    /// `base_url` + `user/<name>/`: the path prefix the server must serve under.
    pub prefix: String,
    pub user_options: serde_json::Value,
    /// The image of the chosen profile; `None`: the backend's own choice (its configured image,
    /// or an allowed `user_options.image`).
    pub image: Option<String>,
    /// Extra volumes of the chosen profile (`SOURCE:/target[:ro]`).
    pub volumes: Vec<String>,
    pub memory_limit: Option<u64>,
    pub cpu_limit: Option<f64>,
    /// GPU units (UUIDs) leased for the server's life (a GPU profile); empty: none, and the
    /// server sees no GPU.
    pub gpus: Vec<String>,
    /// GPUs its profile asks for: what a cluster's device plugin places when Orrery leases
    /// none itself (`spawner.kubernetes.gpus = "device-plugin"`).
    pub gpu_count: u32,
    /// Base image → the image derived from it by the software environment in effect
    /// (`orrery env`): whatever image the backend settles on, it runs this one instead.
    pub derived_images: BTreeMap<String, String>,
    /// Free-text progress messages for the spawn-pending page ("pulling image 40%").
    pub progress: mpsc::UnboundedSender<String>,
    /// The configuration in force when the spawn began (backend settings live in it).
    pub config: Arc<crate::config::Config>,
}

/// A server the backend runs, as found by [`Backend::list`] (for reconcile).
#[derive(Debug, Clone)]
pub struct Observed {
    pub user: String,
    pub server: String,
    pub state: serde_json::Value,
    /// When the backend made it, if it knows: an unrecorded server older than
    /// `spawner.start_timeout` cannot belong to a spawn in flight.
    pub created: Option<chrono::DateTime<chrono::Utc>>,
}

/// A started server: where to reach it and the handle to find it again.
#[derive(Debug, Clone)]
pub struct Started {
    /// Base URL the hub reaches the server at, e.g. `http://127.0.0.1:41234`; the prefix is
    /// appended by the caller.
    pub url: String,
    pub state: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PollStatus {
    Running,
    /// Gone, with a reason to show the user (exit code, OOM kill, last log lines).
    Stopped(String),
}

#[derive(Debug, Error)]
pub enum SpawnError {
    #[error("{0}")]
    NotAvailable(String),
    #[error("{0}")]
    Failed(String),
}

pub trait Backend: Send + Sync {
    /// Short name for messages and `orrery doctor`.
    fn name(&self) -> &'static str;

    /// Get ready to run servers (connect, create the network); returns the address the internal
    /// listener must bind so servers can reach the hub. Retried by the daemon until it succeeds.
    fn prepare(&self) -> BoxFuture<'_, Result<IpAddr, SpawnError>>;

    /// Address the hub API must be reachable at from inside a started server, e.g.
    /// `http://127.0.0.1:8081` for local processes. None: not prepared yet.
    fn hub_api_base(&self, internal_port: u16) -> Option<String>;

    fn start(&self, spec: SpawnSpec) -> BoxFuture<'_, Result<Started, SpawnError>>;

    fn stop<'a>(
        &'a self,
        user: &'a str,
        server_name: &'a str,
        state: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), SpawnError>>;

    fn poll<'a>(
        &'a self,
        user: &'a str,
        server_name: &'a str,
        state: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<PollStatus, SpawnError>>;

    /// Extra words on why a server failed to become ready (e.g. its last log lines).
    fn describe_failure<'a>(
        &'a self,
        _user: &'a str,
        _server_name: &'a str,
        _state: &'a serde_json::Value,
    ) -> BoxFuture<'a, String> {
        Box::pin(async { String::new() })
    }

    /// Delete a user's persistent files (home volume). Only ever called when an admin asks for
    /// it explicitly (`orrery users remove NAME --purge`).
    fn purge_user_data<'a>(
        &'a self,
        _user: &'a str,
        _config: &'a crate::config::Config,
    ) -> BoxFuture<'a, Result<String, SpawnError>> {
        Box::pin(async { Ok("nothing to purge: this backend keeps no per-user files".to_string()) })
    }

    /// Every server the backend runs, including ones the hub has no record of.
    fn list(&self) -> BoxFuture<'_, Result<Vec<Observed>, SpawnError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// The image a container backend runs for `spec`: the profile's, else an allowed
/// `user_options.image`, else `spawner.docker.image`; then the software environment's image
/// derived from it, if one was built.
pub fn choose_image(spec: &SpawnSpec) -> Result<String, SpawnError> {
    let cfg = &spec.config.spawner.docker;
    let image = match spec.user_options.get("image").and_then(|v| v.as_str()) {
        // A profile's image: the admin chose it, and the hub checked who may use it.
        None if spec.image.is_some() => spec.image.clone().unwrap_or_default(),
        None => cfg.image.clone(),
        Some(i) if i == cfg.image || cfg.allowed_images.iter().any(|a| a == i) => i.to_string(),
        Some(i) => {
            return Err(SpawnError::Failed(format!(
                "image {i:?} is not allowed; choose one of: {}",
                std::iter::once(cfg.image.as_str())
                    .chain(cfg.allowed_images.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    };
    Ok(spec.derived_images.get(&image).cloned().unwrap_or(image))
}

/// `"\nLast log lines:\n…"` for a server's last output, or nothing when it wrote none: what
/// every backend adds to a failure.
pub fn log_note(logs: &str) -> String {
    if logs.is_empty() {
        String::new()
    } else {
        format!("\nLast log lines:\n{logs}")
    }
}
