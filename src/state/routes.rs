//! The proxy's route table: for each server record, whether it exists and, when it is ready
//! (neither starting nor stopping) with an address, where it is reached. In memory, so a
//! proxied request reads no record and decodes no JSON.
//!
//! It is kept with the records, not beside them: every write of a server record
//! ([`Store::change_server_with`], the one place they are written) updates the table once its
//! transaction has committed, by reading the committed record again under one lock — so two
//! writers that commit in one order and reach the table in the other still leave it holding
//! the latest. [`Store::open`] builds it from the records, so a restart (also after `kill -9`)
//! starts from what the state says.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use super::servers::ServerRecord;
use super::{Result, Store};

/// Where a request for one server goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// No such server.
    Absent,
    /// A record exists but the server is not ready (starting, stopping, or no address yet).
    NotReady,
    /// Ready at this base URL, e.g. `http://172.18.0.5:8888`.
    Ready(Arc<str>),
}

/// user → server name → its target (`None`: a record that is not ready).
type Table = HashMap<String, HashMap<String, Option<Arc<str>>>>;

#[derive(Default)]
pub struct Routes {
    table: RwLock<Table>,
    /// `owner NUL server` of every server someone has a share of (the proxy checks visitors
    /// only for those), kept with the shares as the table is with the servers.
    shared: RwLock<std::collections::HashSet<String>>,
    /// Held from re-reading a record to updating its entry, so updates land in order.
    order: Mutex<()>,
}

fn shared_key(owner: &str, server: &str) -> String {
    format!("{owner}\0{server}")
}

/// The entry a record makes: its address only while it is ready.
fn target(s: &ServerRecord) -> Option<Arc<str>> {
    if s.is_ready() {
        s.url.as_deref().map(Arc::from)
    } else {
        None
    }
}

impl Routes {
    fn set(table: &mut Table, user: &str, name: &str, record: Option<&ServerRecord>) {
        match record {
            Some(s) => {
                table
                    .entry(user.to_string())
                    .or_default()
                    .insert(name.to_string(), target(s));
            }
            None => {
                if let Some(servers) = table.get_mut(user) {
                    servers.remove(name);
                    if servers.is_empty() {
                        table.remove(user);
                    }
                }
            }
        }
    }
}

impl Store {
    /// Where a request for `user`'s server `name` ("" for the default one) goes.
    pub fn route(&self, user: &str, name: &str) -> Route {
        let table = self.routes.table.read().unwrap_or_else(|e| e.into_inner());
        match table.get(user).and_then(|servers| servers.get(name)) {
            None => Route::Absent,
            Some(None) => Route::NotReady,
            Some(Some(url)) => Route::Ready(url.clone()),
        }
    }

    /// Every entry: (user, server, target), sorted; what `GET /hub/api/orrery/routes` shows.
    pub fn routes(&self) -> Vec<(String, String, Option<String>)> {
        let table = self.routes.table.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = table
            .iter()
            .flat_map(|(user, servers)| {
                servers.iter().map(move |(name, t)| {
                    (user.clone(), name.clone(), t.as_deref().map(str::to_string))
                })
            })
            .collect();
        all.sort();
        all
    }

    /// Bring `user/name`'s entry to what the committed record says.
    pub(super) fn refresh_route(&self, user: &str, name: &str) -> Result<()> {
        let _order = self.routes.order.lock().unwrap_or_else(|e| e.into_inner());
        let record = self.server(user, name)?;
        let mut table = self.routes.table.write().unwrap_or_else(|e| e.into_inner());
        Routes::set(&mut table, user, name, record.as_ref());
        Ok(())
    }

    /// Build the table from every record, and the shared set from every share (at open).
    pub(super) fn load_routes(&self) -> Result<()> {
        let _order = self.routes.order.lock().unwrap_or_else(|e| e.into_inner());
        let mut fresh = Table::new();
        for s in self.servers()? {
            Routes::set(&mut fresh, &s.user, &s.name, Some(&s));
        }
        *self.routes.table.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        let shared = self
            .all_shares()?
            .into_iter()
            .map(|s| shared_key(&s.owner, &s.server))
            .collect();
        *self
            .routes
            .shared
            .write()
            .unwrap_or_else(|e| e.into_inner()) = shared;
        Ok(())
    }

    /// Whether anyone has a share of this server (the proxy checks visitors only then): from
    /// memory, no scan of the shares.
    pub fn server_is_shared(&self, owner: &str, server: &str) -> bool {
        self.routes
            .shared
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&shared_key(owner, server))
    }

    /// Bring the shared set to what the committed shares of `owner`'s `server` say.
    pub(super) fn refresh_shared(&self, owner: &str, server: &str) {
        let _order = self.routes.order.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.server_has_shares(owner, server);
        let mut set = self
            .routes
            .shared
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let key = shared_key(owner, server);
        if now {
            set.insert(key);
        } else {
            set.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn record(user: &str, name: &str, ready: bool, url: Option<&str>) -> ServerRecord {
        ServerRecord {
            user: user.into(),
            name: name.into(),
            url: url.map(str::to_string),
            started: None,
            last_activity: None,
            pending: (!ready).then(|| "spawn".to_string()),
            ready,
            user_options: serde_json::Value::Null,
            display_name: None,
            backend_state: serde_json::Value::Null,
            token_id: None,
            environment: None,
        }
    }

    /// What the table must hold: one entry per record, built from the records themselves.
    fn expected(store: &Store) -> Vec<(String, String, Option<String>)> {
        let mut all: Vec<_> = store
            .servers()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s.user.clone(),
                    s.name.clone(),
                    target(s).map(|t| t.to_string()),
                )
            })
            .collect();
        all.sort();
        all
    }

    /// Random starts, readiness, activity, stops and deletes of default and named servers
    /// from four threads at once: the table always ends as the records say, and so does the
    /// table a reopened store builds (a restart, or one after `kill -9`).
    #[test]
    fn the_table_follows_every_write_and_is_rebuilt_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for u in ["ann", "bob", "cy"] {
            store.put_user(&crate::state::UserRecord::new(u)).unwrap();
        }
        let threads: Vec<_> = (0..4u64)
            .map(|seed| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                    for i in 0..400 {
                        let user = ["ann", "bob", "cy"][rng.gen_range(0..3)];
                        let name = ["", "lab", "gpu"][rng.gen_range(0..3)];
                        match rng.gen_range(0..5) {
                            0 => {
                                let _ = store.create_server(&record(user, name, false, None));
                            }
                            1 => {
                                let url = format!("http://10.0.0.{}:8888", i % 250);
                                store
                                    .update_server(user, name, |s| {
                                        s.url = Some(url.clone());
                                        s.ready = true;
                                        s.pending = None;
                                    })
                                    .unwrap();
                            }
                            2 => {
                                store
                                    .update_server(user, name, |s| s.pending = Some("stop".into()))
                                    .unwrap();
                            }
                            3 => {
                                store.delete_server(user, name).unwrap();
                            }
                            _ => {
                                let when = chrono::Utc::now();
                                store
                                    .update_server(user, name, |s| s.last_activity = Some(when))
                                    .unwrap();
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let want = expected(&store);
        assert!(!want.is_empty(), "the run left some servers");
        assert_eq!(store.routes(), want);
        // Each kind of entry answers as the proxy asks.
        for (user, name, t) in &want {
            let r = store.route(user, name);
            match t {
                Some(url) => assert_eq!(r, Route::Ready(Arc::from(url.as_str()))),
                None => assert_eq!(r, Route::NotReady),
            }
        }
        assert_eq!(store.route("nobody", ""), Route::Absent);
        drop(store);
        let reopened = Store::open(dir.path()).unwrap();
        assert_eq!(reopened.routes(), want, "rebuilt from the records at open");
    }
}
