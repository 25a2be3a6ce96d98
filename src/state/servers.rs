//! Server records: what the hub believes about each user's single-user server, persisted so a
//! restarted daemon can re-adopt running servers instead of starting them twice.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::indexes::{apply_user_facts, decode_tx, UserFacts};
use super::{all, get, Result, Store};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerRecord {
    pub user: String,
    /// "" for the default server.
    pub name: String,
    /// Where the hub (and its proxy) reaches the server, e.g. `http://172.18.0.5:8888`.
    pub url: Option<String>,
    pub started: Option<DateTime<Utc>>,
    pub last_activity: Option<DateTime<Utc>>,
    /// "spawn" or "stop" while in transition.
    pub pending: Option<String>,
    pub ready: bool,
    pub user_options: serde_json::Value,
    /// The name people see for the server (JupyterHub 6's `display_name`), if one was given.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Backend-specific handle (container id, pid), for stop/poll after a restart.
    pub backend_state: serde_json::Value,
    /// The server token's id, so it can be revoked when the server stops.
    pub token_id: Option<String>,
    /// The software environment generation in effect when it started (`orrery env`), so the
    /// home page can say when a newer one is available.
    #[serde(default)]
    pub environment: Option<u64>,
}

impl ServerRecord {
    pub fn key(user: &str, name: &str) -> String {
        format!("{user}/{name}")
    }

    /// Ready and neither starting nor stopping: what JupyterHub's `state=ready` lists.
    pub fn is_ready(&self) -> bool {
        self.ready && self.pending.is_none()
    }
}

impl Store {
    pub fn server(&self, user: &str, name: &str) -> Result<Option<ServerRecord>> {
        get(&self.servers, "server", &ServerRecord::key(user, name))
    }

    pub fn servers(&self) -> Result<Vec<ServerRecord>> {
        all(&self.servers, "server")
    }

    /// `user`'s servers: the records under the key prefix `user/` (names cannot hold `/`), not
    /// a scan of every server: each user model in a list asks this.
    pub fn servers_of(&self, user: &str) -> Result<Vec<ServerRecord>> {
        self.servers
            .scan_prefix(format!("{user}/").as_bytes())
            .values()
            .map(|v| super::decode("server", &v?))
            .collect()
    }

    /// Store a server record (new or changed), moving its user in the active and ready
    /// indexes, in one transaction.
    pub fn put_server(&self, s: &ServerRecord) -> Result<()> {
        self.write_server(&s.user, &s.name, Some(s), false)
            .map(|_| ())
    }

    /// Store a new server record unless one exists: the reservation that makes two concurrent
    /// start requests for one server start it once. Returns false if one existed.
    pub fn create_server(&self, s: &ServerRecord) -> Result<bool> {
        self.write_server(&s.user, &s.name, Some(s), true)
    }

    pub fn delete_server(&self, user: &str, name: &str) -> Result<bool> {
        self.write_server(user, name, None, false)
    }

    /// Write (`new`) or delete (`None`) the server `user/name` with its user's server counts
    /// and index entries. With `only_if_absent`, returns false and writes nothing if a record
    /// exists; otherwise returns whether one existed.
    fn write_server(
        &self,
        user: &str,
        name: &str,
        new: Option<&ServerRecord>,
        only_if_absent: bool,
    ) -> Result<bool> {
        let key = ServerRecord::key(user, name);
        let bytes = new.map(super::encode);
        self.transact(|tx| {
            let old = match tx.servers.get(key.as_bytes())? {
                Some(raw) => Some(decode_tx::<ServerRecord>("server", &raw)?),
                None => None,
            };
            if only_if_absent && old.is_some() {
                return Ok(false);
            }
            let facts = UserFacts::read(tx, user)?;
            let mut counts = facts.servers;
            if let Some(o) = &old {
                counts.servers = counts.servers.saturating_sub(1);
                if o.is_ready() {
                    counts.ready = counts.ready.saturating_sub(1);
                }
            }
            if let Some(n) = new {
                counts.servers += 1;
                if n.is_ready() {
                    counts.ready += 1;
                }
            }
            counts.put(tx, user)?;
            match &bytes {
                Some(b) => tx.servers.insert(key.as_bytes(), b.as_slice())?,
                None => tx.servers.remove(key.as_bytes())?,
            };
            let after = UserFacts {
                servers: counts,
                ..facts
            };
            apply_user_facts(tx, user, &facts, &after)?;
            Ok(if only_if_absent { true } else { old.is_some() })
        })
    }
}
