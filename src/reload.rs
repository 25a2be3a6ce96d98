//! Applying a changed configuration to the running daemon (SIGHUP or `orrery config reload`).
//!
//! The file is re-read and validated; an invalid file changes nothing. Keys that the running
//! daemon can adopt (auth, users, limits, cull, spawner, services, groups, roles, …) take effect
//! at once (`[[groups]]` are written into the state here); keys bound at startup (listeners,
//! state path, base_url, logging) are reported as needing a restart and keep their running
//! values until then.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::{self, Config, ConfigError};
use crate::hub::Hub;
use crate::secrets;
use crate::state::{OAuthClientRecord, StateError};

/// Key prefixes only a restart applies.
const RESTART_KEYS: &[&str] = &[
    "http.address",
    "http.port",
    "https.enabled",
    "https.port",
    "internal.",
    "state.",
    "base_url",
    "logging.",
    "spawner.backend",
    "spawner.docker.network",
    "spawner.docker.socket",
];

#[derive(Debug, Serialize, PartialEq)]
pub struct ReloadReport {
    pub applied: bool,
    pub changed: Vec<String>,
    pub needs_restart: Vec<String>,
    /// What the new config does that is accepted but worth saying ([`config::load::warnings`]).
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Flatten a config into `dotted.key → value` strings for diffing.
fn flatten(cfg: &Config) -> BTreeMap<String, String> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Ok(v) = toml::Value::try_from(cfg) {
        walk("", &v, &mut out);
    }
    out
}

/// Keys whose values differ between `old` and `new`.
pub fn diff(old: &Config, new: &Config) -> Vec<String> {
    let (a, b) = (flatten(old), flatten(new));
    let mut keys: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

pub async fn reload(hub: &Hub) -> Result<ReloadReport, ReloadError> {
    let new = match &hub.config_path {
        Some(p) => config::load_file(p)?,
        None => Config::developer(),
    };
    let old = hub.config();
    let changed = diff(&old, &new);
    let warnings = config::load::warnings(&new);
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let needs_restart: Vec<String> = changed
        .iter()
        .filter(|k| RESTART_KEYS.iter().any(|p| k.starts_with(p)))
        .cloned()
        .collect();
    // Keep what only a restart can change at its running value.
    let mut applied = new;
    // Live: which proxies are trusted, which certificate files or ACME names are used.
    applied.http.address = old.http.address.clone();
    applied.http.port = old.http.port;
    applied.https.enabled = old.https.enabled;
    applied.https.port = old.https.port;
    applied.internal = old.internal.clone();
    applied.state = old.state.clone();
    applied.base_url = old.base_url.clone();
    applied.logging = old.logging.clone();
    applied.spawner.backend = old.spawner.backend;
    applied.spawner.docker.network = old.spawner.docker.network.clone();
    applied.spawner.docker.socket = old.spawner.docker.socket.clone();
    let https = applied.https.clone();
    hub.set_config(applied);
    sync_services(hub)?;
    sync_groups(hub)?;
    // Certificate files are re-read now (the watcher would notice within seconds); a pair that
    // does not load keeps the served certificate and says why.
    if let (true, Some(cert), Some(key)) = (https.enabled, &https.tls.cert, &https.tls.key) {
        if let Err(e) = crate::tls::files::load(&hub.tls, cert, key) {
            hub.tls.fail(format!(
                "the certificate files were not loaded ({e}); still serving the previous one"
            ));
        }
    }
    hub.store.flush().await?;
    tracing::info!(?changed, ?needs_restart, "configuration reloaded");
    Ok(ReloadReport {
        applied: true,
        changed,
        needs_restart,
        warnings,
    })
}

/// Write the config's `[[groups]]` into the store, and hand the groups that left it back to the
/// API with their members ([`crate::groups::sync`]). Roles are read from the config at each
/// request and need nothing here.
pub fn sync_groups(hub: &Hub) -> Result<(), StateError> {
    let report = crate::groups::sync(&hub.store, &hub.config().groups)?;
    if !report.written.is_empty() || !report.released.is_empty() {
        tracing::info!(
            written = ?report.written,
            released = ?report.released,
            "config groups written to the state"
        );
    }
    Ok(())
}

/// Register an OAuth client for each config service with an `oauth_redirect_uri`, and drop the
/// clients of services that are gone.
pub fn sync_services(hub: &Hub) -> Result<(), StateError> {
    let cfg = hub.config();
    let mut wanted = Vec::new();
    for svc in &cfg.services {
        let Some(redirect) = &svc.oauth_redirect_uri else {
            continue;
        };
        let id = format!("service-{}", svc.name);
        hub.store.put_oauth_client(&OAuthClientRecord {
            id: id.clone(),
            secret_hash: secrets::hash_token(&svc.api_token),
            redirect_uri: redirect.clone(),
            access_scopes: vec![format!("access:services!service={}", svc.name)],
            user: None,
            description: format!("Service {}", svc.name),
        })?;
        wanted.push(id);
    }
    for c in hub.store.oauth_clients()? {
        if c.id.starts_with("service-") && !wanted.contains(&c.id) {
            hub.store.delete_oauth_client(&c.id)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_changed_keys() {
        let a = Config::default();
        let mut b = Config::default();
        b.cull.timeout = config::Duration::from_secs(60);
        b.http.port = 9000;
        assert_eq!(
            diff(&a, &b),
            vec!["cull.timeout".to_string(), "http.port".to_string()]
        );
        assert!(diff(&a, &a).is_empty());
    }
}
