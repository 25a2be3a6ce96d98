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

    /// Change the server `user/name` in place, reading and writing it in one transaction, so
    /// two writers (the spawn marking it ready, activity moving its timestamp) never undo
    /// each other's change. Returns the record as written, `None` if there is none.
    pub fn update_server(
        &self,
        user: &str,
        name: &str,
        change: impl Fn(&mut ServerRecord),
    ) -> Result<Option<ServerRecord>> {
        let mut written = None;
        self.change_server(
            user,
            name,
            |old| {
                let mut s = old?.clone();
                change(&mut s);
                Some(s)
            },
            &mut written,
        )?;
        Ok(written)
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
        let mut written = None;
        let existed = std::cell::Cell::new(false);
        self.change_server_with(
            user,
            name,
            |old| {
                existed.set(old.is_some());
                match (new, old) {
                    (_, Some(_)) if only_if_absent => Keep,
                    (Some(n), _) => Write(Box::new(n.clone())),
                    (None, _) => Delete,
                }
            },
            &mut written,
        )?;
        Ok(if only_if_absent {
            !existed.get()
        } else {
            existed.get()
        })
    }

    /// [`Store::change_server_with`] for a change that is a new record or none (no delete).
    fn change_server(
        &self,
        user: &str,
        name: &str,
        f: impl Fn(Option<&ServerRecord>) -> Option<ServerRecord>,
        written: &mut Option<ServerRecord>,
    ) -> Result<()> {
        self.change_server_with(
            user,
            name,
            |old| match f(old) {
                Some(n) => Write(Box::new(n)),
                None => Keep,
            },
            written,
        )
    }

    /// Read the server `user/name` and write what `f` makes of it, with its user's server
    /// counts and index entries, in one transaction (retried by sled on conflict, so `f` may
    /// run more than once).
    fn change_server_with(
        &self,
        user: &str,
        name: &str,
        f: impl Fn(Option<&ServerRecord>) -> ServerChange,
        written: &mut Option<ServerRecord>,
    ) -> Result<()> {
        let key = ServerRecord::key(user, name);
        let out = self.transact(|tx| {
            let old = match tx.servers.get(key.as_bytes())? {
                Some(raw) => Some(decode_tx::<ServerRecord>("server", &raw)?),
                None => None,
            };
            let new = match f(old.as_ref()) {
                Keep => return Ok(None),
                Write(n) => Some(*n),
                Delete => None,
            };
            let facts = UserFacts::read(tx, user)?;
            let mut counts = facts.servers;
            if let Some(o) = &old {
                counts.servers = counts.servers.saturating_sub(1);
                if o.is_ready() {
                    counts.ready = counts.ready.saturating_sub(1);
                }
            }
            if let Some(n) = &new {
                counts.servers += 1;
                if n.is_ready() {
                    counts.ready += 1;
                }
            }
            counts.put(tx, user)?;
            match &new {
                Some(n) => tx.servers.insert(key.as_bytes(), super::encode(n))?,
                None => tx.servers.remove(key.as_bytes())?,
            };
            let after = UserFacts {
                servers: counts,
                ..facts
            };
            apply_user_facts(tx, user, &facts, &after)?;
            Ok(new)
        })?;
        // The proxy's route follows the committed record.
        self.refresh_route(user, name)?;
        *written = out;
        Ok(())
    }
}

/// What [`Store::change_server_with`] does to a server record.
enum ServerChange {
    /// Leave it (and everything else) as it is.
    Keep,
    Write(Box<ServerRecord>),
    Delete,
}
use ServerChange::{Delete, Keep, Write};

#[cfg(test)]
mod tests {
    use super::*;

    fn record(user: &str) -> ServerRecord {
        ServerRecord {
            user: user.into(),
            name: String::new(),
            url: None,
            started: None,
            last_activity: None,
            pending: Some("spawn".into()),
            ready: false,
            user_options: serde_json::Value::Null,
            display_name: None,
            backend_state: serde_json::Value::Null,
            token_id: None,
            environment: None,
        }
    }

    /// Activity and the spawn write the same record at once: neither undoes the other (a
    /// read-then-write of a stale copy once left a ready server "pending" for good).
    #[test]
    fn concurrent_updates_of_one_server_keep_both_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .put_user(&crate::state::UserRecord::new("ann"))
            .unwrap();
        assert!(store.create_server(&record("ann")).unwrap());
        let activity = {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..300 {
                    let when = chrono::DateTime::from_timestamp(1_700_000_000 + i, 0).unwrap();
                    store
                        .update_server("ann", "", |s| s.last_activity = Some(when))
                        .unwrap();
                }
            })
        };
        for _ in 0..50 {
            store
                .update_server("ann", "", |s| s.url = Some("http://10.0.0.2:8888".into()))
                .unwrap();
        }
        store
            .update_server("ann", "", |s| {
                s.pending = None;
                s.ready = true;
            })
            .unwrap();
        activity.join().unwrap();
        let s = store.server("ann", "").unwrap().unwrap();
        assert!(s.ready && s.pending.is_none(), "{s:?}");
        assert_eq!(s.url.as_deref(), Some("http://10.0.0.2:8888"));
        assert_eq!(s.last_activity.unwrap().timestamp(), 1_700_000_299);
        assert_eq!(
            store.update_server("bob", "", |_| {}).unwrap(),
            None,
            "no record: nothing written"
        );
    }
}
