//! Server records: what the hub believes about each user's single-user server, persisted so a
//! restarted daemon can re-adopt running servers instead of starting them twice.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{all, get, put, Result, Store};

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
}

impl ServerRecord {
    pub fn key(user: &str, name: &str) -> String {
        format!("{user}/{name}")
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

    pub fn put_server(&self, s: &ServerRecord) -> Result<()> {
        put(&self.servers, &ServerRecord::key(&s.user, &s.name), s)
    }

    /// Store a new server record unless one exists: the reservation that makes two concurrent
    /// start requests for one server start it once. Returns false if one existed.
    pub fn create_server(&self, s: &ServerRecord) -> Result<bool> {
        let key = ServerRecord::key(&s.user, &s.name);
        let swapped = self.servers.compare_and_swap(
            key.as_bytes(),
            None as Option<&[u8]>,
            Some(super::encode(s)),
        )?;
        Ok(swapped.is_ok())
    }

    pub fn delete_server(&self, user: &str, name: &str) -> Result<bool> {
        Ok(self
            .servers
            .remove(ServerRecord::key(user, name))?
            .is_some())
    }
}
