//! The built-in idle culler (TLJH's defaults: on, 10 minutes idle, checked every minute).
//!
//! A ready server whose last activity (from the proxy and from the server's own activity
//! reports) is older than `cull.timeout` is stopped; with `cull.max_age`, servers older than that
//! are stopped however active. With `cull.users`, users (never admins) with no server and idle
//! past the timeout are deleted — their home volumes are kept.

use std::sync::Arc;

use chrono::Utc;
use futures::stream::{self, StreamExt};

use crate::hub::Hub;
use crate::spawn;

/// One pass over all servers; returns the users whose servers were stopped.
pub async fn cull_once(hub: &Arc<Hub>) -> Vec<String> {
    let cfg = hub.config().cull.clone();
    let now = Utc::now();
    let timeout = chrono::Duration::from_std(cfg.timeout.as_std()).unwrap_or(chrono::Duration::MAX);
    let max_age = chrono::Duration::from_std(cfg.max_age.as_std()).unwrap_or(chrono::Duration::MAX);
    let servers = hub.store.servers().unwrap_or_default();
    let victims: Vec<(String, String, String)> = servers
        .into_iter()
        .filter(|s| s.ready && s.pending.is_none())
        .filter_map(|s| {
            let idle = s.last_activity.or(s.started).map(|t| now - t);
            let age = s.started.map(|t| now - t);
            if idle.is_some_and(|i| i > timeout) {
                Some((
                    s.user,
                    s.name,
                    format!("idle for {}s", idle.map(|i| i.num_seconds()).unwrap_or(0)),
                ))
            } else if !cfg.max_age.is_zero() && age.is_some_and(|a| a > max_age) {
                Some((s.user, s.name, "older than cull.max_age".to_string()))
            } else {
                None
            }
        })
        .collect();
    let stopped: Vec<String> = stream::iter(victims)
        .map(|(user, server, why)| {
            let hub = hub.clone();
            async move {
                tracing::info!(%user, %why, "culling server");
                match spawn::stop(&hub, &user, &server).await {
                    Ok(()) => Some(user),
                    Err(e) => {
                        tracing::warn!(%user, error = %e, "culling failed");
                        None
                    }
                }
            }
        })
        .buffer_unordered(cfg.concurrency.max(1) as usize)
        .filter_map(|x| async move { x })
        .collect()
        .await;
    if cfg.users {
        for u in hub.store.users().unwrap_or_default() {
            let idle = u.last_activity.unwrap_or(u.created);
            let has_server = hub
                .store
                .servers_of(&u.name)
                .map(|s| !s.is_empty())
                .unwrap_or(true);
            if !hub.is_admin(&u) && !has_server && now - idle > timeout {
                tracing::info!(user = %u.name, "culling idle user");
                let _ = hub.store.delete_user(&u.name);
            }
        }
    }
    stopped
}

/// Run the culler until the daemon stops; re-reads the config each round so reload applies.
pub async fn run(hub: Arc<Hub>, stop: tokio_util::sync::CancellationToken) {
    loop {
        let every = hub
            .config()
            .cull
            .every
            .as_std()
            .max(std::time::Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        if hub.config().cull.enabled {
            cull_once(&hub).await;
        }
    }
}
