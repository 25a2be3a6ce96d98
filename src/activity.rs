//! Activity: when users and their servers were last used.
//!
//! The proxy (every request to a user's server) and the gateway (kernel traffic, which the
//! browser sends past the user's server) both report use here; so does the activity API that
//! single-user servers call. The culler reads the result. Timestamps only move forward, and the
//! per-request reports are throttled so the hot path writes at most once per interval.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::state::{StateError, Store};

/// Activity from traffic is written at most this often per server.
const TRAFFIC_EVERY: Duration = Duration::from_secs(30);

pub struct Activity {
    store: Store,
    /// Last time traffic activity was written, per user: keeps writes off the hot path.
    touched: Mutex<HashMap<String, Instant>>,
}

impl Activity {
    pub fn new(store: Store) -> Activity {
        Activity {
            store,
            touched: Mutex::new(HashMap::new()),
        }
    }

    /// Record activity for a user (and one of their servers); timestamps only move forward.
    pub fn record(
        &self,
        user: &str,
        server: Option<&str>,
        when: DateTime<Utc>,
    ) -> Result<(), StateError> {
        self.store.update_user(user, |u| {
            if u.last_activity.is_none_or(|t| t < when) {
                u.last_activity = Some(when);
            }
        })?;
        if let Some(name) = server {
            // In one transaction: a stale copy written back would undo a concurrent change
            // (the spawn marking the server ready).
            self.store.update_server(user, name, |s| {
                if s.last_activity.is_none_or(|t| t < when) {
                    s.last_activity = Some(when);
                }
            })?;
        }
        Ok(())
    }

    /// Traffic to `user`'s server `server` ("" for the default one): recorded now unless it
    /// was in the last 30 s.
    pub fn traffic(&self, user: &str, server: &str) {
        if self.due(&format!("{user}/{server}")) {
            if let Err(e) = self.record(user, Some(server), Utc::now()) {
                tracing::debug!(%user, error = %e, "cannot record activity");
            }
        }
    }

    /// Whether traffic activity for `key` (`user/server`) is due to be written again.
    fn due(&self, key: &str) -> bool {
        let mut map = self.touched.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match map.get(key) {
            Some(t) if now.duration_since(*t) < TRAFFIC_EVERY => false,
            _ => {
                map.insert(key.to_string(), now);
                true
            }
        }
    }
}
