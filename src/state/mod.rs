//! Durable state in sled: users, groups, API tokens, browser sessions, OAuth clients and codes,
//! the servers the hub believes are running, and the GPU units leased to kernels.
//!
//! Each kind of record has its own sled tree and its own file here. Records are JSON values, so
//! a dump is readable by a person; secrets are never stored, only their hashes
//! ([`crate::secrets`]). A `schema_version` key in the `meta` tree guards against a state
//! directory written by a newer Orrery: such a directory is refused, never guessed at. An older
//! one is migrated forward when opened (`migrate.rs`), and the database as it was before is kept
//! beside it (`sled.schema-v<N>.backup`).
//!
//! Lists are answered from secondary indexes (`indexes.rs`) and counts (`counts.rs`) written
//! in the same transaction as their records ([`Store::transact`]), and paged by the store
//! (`pages.rs`), so a page costs its records, not every record.

mod counts;
mod environment;
mod export;
mod gpu_queue;
mod groups;
mod indexes;
mod leases;
mod migrate;
mod oauth;
mod pages;
mod rank;
mod routes;
mod servers;
mod sessions;
mod shares;
mod tokens;
mod users;

use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;

pub use environment::{DerivedImage, EnvSpec, EnvironmentRecord, Expected, Generation};
pub use export::StateExport;
pub use gpu_queue::QueueEntry;
pub use groups::{GroupRecord, ManagedBy};
pub use indexes::activity_key;
pub use leases::{parse_seat, seat_key, LeaseHolder, LeaseRecord};
pub use oauth::{OAuthClientRecord, OAuthCodeRecord};
pub use pages::{UserOrder, UserQuery, UserState};
pub use routes::Route;
pub use servers::ServerRecord;
pub use sessions::SessionRecord;
pub use shares::{Grantee, ShareCodeRecord, ShareRecord};
pub use tokens::{TokenKind, TokenOwner, TokenRecord};
pub use users::UserRecord;

/// The layout version this binary writes and understands (what changed at each version is
/// listed in `migrate.rs`).
pub const SCHEMA_VERSION: u32 = 3;

/// The `meta` key recording the sign-up default in force when the state was created.
const SIGNUP_DEFAULT_KEY: &str = "signup_default_at_creation";

/// The sub-directory of the state directory that holds the sled database.
const DB_DIR: &str = "sled";

#[derive(Debug, Error)]
pub enum StateError {
    #[error("cannot open the state database in {path}: {source}. If another `orrery serve` is running it holds the lock; otherwise the directory may be damaged: restore it from a backup or move it aside to start empty")]
    Open { path: PathBuf, source: sled::Error },
    #[error("cannot create the state directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the state in {path} has schema version {found}, but this orrery understands only up to {SCHEMA_VERSION}: it was written by a newer Orrery. Install that version again (or restore a backup of the state directory); nothing was changed")]
    FutureSchema { path: PathBuf, found: u32 },
    #[error("the state in {path} is damaged: {detail}. Restore the directory from a backup, or move it aside to start with empty state; nothing was changed")]
    Corrupt { path: PathBuf, detail: String },
    #[error("state database error: {0}")]
    Db(#[from] sled::Error),
    #[error("a stored {kind} record is unreadable: {source}")]
    Decode {
        kind: &'static str,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Conflict(String),
}

pub type Result<T> = std::result::Result<T, StateError>;

/// The handle to the state database; cheap to clone (sled trees are reference counted).
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    /// The directory, kept for messages.
    path: PathBuf,
    /// Schema version, instance id, and the counts (`counts.rs`).
    meta: sled::Tree,
    users: sled::Tree,
    /// The user indexes (see `indexes.rs` for each key's layout): by last activity, with an
    /// active server, with a ready server, the latter two by last activity, and each name's
    /// server counts they are kept from.
    users_by_activity: sled::Tree,
    users_active: sled::Tree,
    users_ready: sled::Tree,
    active_by_activity: sled::Tree,
    ready_by_activity: sled::Tree,
    server_counts: sled::Tree,
    /// A user's or service's tokens, so listing them and deleting a user cost their tokens.
    tokens_by_owner: sled::Tree,
    /// A user's sessions, so deleting a user costs their sessions.
    sessions_by_user: sled::Tree,
    /// A user's OAuth clients, so deleting a user costs their clients.
    clients_by_user: sled::Tree,
    /// Rank checkpoints of the trees lists page with offsets (`rank.rs`): in memory, shared
    /// by every clone, kept exact by [`Store::transact`].
    ranks: std::sync::Arc<rank::Ranks>,
    groups: sled::Tree,
    /// `user NUL group` → empty: group membership by user, written in the same transaction as
    /// the group, so "which groups is this user in" (asked on every API request) costs the
    /// user's groups, not all groups.
    group_members: sled::Tree,
    tokens: sled::Tree,
    sessions: sled::Tree,
    oauth_clients: sled::Tree,
    oauth_codes: sled::Tree,
    servers: sled::Tree,
    /// GPU unit → its lease.
    leases: sled::Tree,
    /// Kernel id → its place in the GPU queue.
    gpu_queue: sled::Tree,
    /// Shares of servers, by server then grantee ([`shares`]).
    shares: sled::Tree,
    /// The same shares by grantee: written in the same transaction.
    shares_by_grantee: sled::Tree,
    /// Share codes by the hash of the code.
    share_codes: sled::Tree,
    /// The software environment's one record ([`environment`]).
    environment: sled::Tree,
    /// The proxy's route table ([`routes`]): in memory, shared by every clone, kept with the
    /// server records.
    routes: std::sync::Arc<routes::Routes>,
}

impl Store {
    /// Open (or create) the state in `dir`, checking its schema version.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let db_path = dir.join(DB_DIR);
        let path = dir.to_path_buf();
        // sled treats a damaged database as empty and starts over, which would silently lose
        // every user and token. So: refuse a damaged settings file up front, keep a copy of the
        // database while opening it, and put the copy back if what opened is not our state.
        let existed = db_path
            .join("db")
            .metadata()
            .map(|m| m.len() > 0)
            .unwrap_or(false);
        if existed {
            check_sled_conf(&db_path.join("conf")).map_err(|detail| StateError::Corrupt {
                path: path.clone(),
                detail,
            })?;
        }
        let backup = dir.join(format!("{DB_DIR}.pre-open"));
        if existed {
            let _ = std::fs::remove_dir_all(&backup);
            copy_dir(&db_path, &backup).map_err(|source| StateError::CreateDir {
                path: backup.clone(),
                source,
            })?;
        }
        let opened = Self::open_checked(&db_path, &path, existed);
        match (&opened, existed) {
            (Ok((_, Some(from))), true) => {
                // Migrated: the copy taken before is the way back; keep it under a clear name.
                let kept = dir.join(format!("{DB_DIR}.schema-v{from}.backup"));
                let _ = std::fs::remove_dir_all(&kept);
                if std::fs::rename(&backup, &kept).is_ok() {
                    tracing::info!(
                        from,
                        to = SCHEMA_VERSION,
                        backup = %kept.display(),
                        "state migrated; the database as it was is kept"
                    );
                }
            }
            (Ok(_), true) => {
                let _ = std::fs::remove_dir_all(&backup);
            }
            (Err(StateError::Open { .. }), true) => {
                // sled never opened it (another process holds it: the running daemon, when a
                // CLI command or `orrery doctor` tries): the database is live and untouched, and
                // putting the copy back would throw away everything written after it was taken.
                let _ = std::fs::remove_dir_all(&backup);
            }
            (Err(_), true) => {
                // sled opened it and what it found is not our state (or a migration failed):
                // put the database back exactly as it was before we touched it.
                let _ = std::fs::remove_dir_all(&db_path);
                let _ = std::fs::rename(&backup, &db_path);
            }
            _ => {}
        }
        opened.map(|(store, _)| store)
    }

    /// Open and check the database, migrating an older schema; also says from which version
    /// it migrated, if it did.
    fn open_checked(db_path: &Path, dir: &Path, existed: bool) -> Result<(Store, Option<u32>)> {
        let path = dir.to_path_buf();
        // A process that just closed the database (a restart, a CLI command) may still hold
        // sled's file lock for a moment: retry briefly before calling it an error.
        let mut attempt = 0;
        let db = loop {
            match sled::Config::new().path(db_path).open() {
                Ok(db) => break db,
                Err(sled::Error::Io(e))
                    if (e.kind() == std::io::ErrorKind::WouldBlock
                        || e.to_string().contains("could not acquire lock"))
                        && attempt < 30 =>
                {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(source) => {
                    return Err(StateError::Open {
                        path: path.clone(),
                        source,
                    })
                }
            }
        };
        let meta = db.open_tree("meta")?;
        let mut migrated = None;
        match meta.get("schema_version")? {
            Some(raw) => {
                let found = std::str::from_utf8(&raw)
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok())
                    .ok_or_else(|| StateError::Corrupt {
                        path: path.clone(),
                        detail: format!("schema_version is not a number ({raw:?})"),
                    })?;
                if found > SCHEMA_VERSION {
                    return Err(StateError::FutureSchema { path, found });
                }
                if found == 0 {
                    return Err(StateError::Corrupt {
                        path,
                        detail: "schema_version is 0".into(),
                    });
                }
                if found < SCHEMA_VERSION {
                    migrate::forward(&db, &meta, found)?;
                    migrated = Some(found);
                }
            }
            None if existed => {
                return Err(StateError::Corrupt {
                    path,
                    detail: "the database has no schema_version: it is damaged or was not written by Orrery".into(),
                });
            }
            None => {
                // A database that has data but no version was not written by us.
                let has_data = db.tree_names().iter().any(|n| {
                    n.as_ref() != b"__sled__default"
                        && n.as_ref() != b"meta"
                        && db.open_tree(n).map(|t| !t.is_empty()).unwrap_or(false)
                });
                if has_data {
                    return Err(StateError::Corrupt {
                        path,
                        detail: "records without a schema_version".into(),
                    });
                }
                meta.insert("schema_version", SCHEMA_VERSION.to_string().as_bytes())?;
                db.flush()?;
            }
        }
        // Which sign-up default this state was created under: the key is new with closed
        // sign-up, so a database that exists without it was made by an Orrery whose
        // `auth.firstuse.create_users` defaulted to true (see `created_with_open_signup`).
        if meta.get(SIGNUP_DEFAULT_KEY)?.is_none() {
            let era: &[u8] = if existed { b"open" } else { b"closed" };
            meta.insert(SIGNUP_DEFAULT_KEY, era)?;
            db.flush()?;
        }
        let store = Store {
            users: db.open_tree("users")?,
            users_by_activity: db.open_tree(indexes::USERS_BY_ACTIVITY)?,
            users_active: db.open_tree(indexes::USERS_ACTIVE)?,
            users_ready: db.open_tree(indexes::USERS_READY)?,
            active_by_activity: db.open_tree(indexes::ACTIVE_BY_ACTIVITY)?,
            ready_by_activity: db.open_tree(indexes::READY_BY_ACTIVITY)?,
            server_counts: db.open_tree(indexes::SERVER_COUNTS)?,
            tokens_by_owner: db.open_tree(indexes::TOKENS_BY_OWNER)?,
            sessions_by_user: db.open_tree(indexes::SESSIONS_BY_USER)?,
            clients_by_user: db.open_tree(indexes::CLIENTS_BY_USER)?,
            ranks: Default::default(),
            meta,
            groups: db.open_tree("groups")?,
            group_members: db.open_tree(migrate::GROUP_MEMBERS)?,
            tokens: db.open_tree("tokens")?,
            sessions: db.open_tree("sessions")?,
            oauth_clients: db.open_tree("oauth_clients")?,
            oauth_codes: db.open_tree("oauth_codes")?,
            servers: db.open_tree("servers")?,
            leases: db.open_tree("gpu_leases")?,
            gpu_queue: db.open_tree("gpu_queue")?,
            shares: db.open_tree("shares")?,
            shares_by_grantee: db.open_tree("shares_by_grantee")?,
            share_codes: db.open_tree("share_codes")?,
            environment: db.open_tree("environment")?,
            routes: Default::default(),
            db,
            path,
        };
        store.load_routes()?;
        Ok((store, migrated))
    }

    /// A random id made when this state directory was created. Backends label what they
    /// create with it, so several hubs can share one Docker engine without touching each
    /// other's containers.
    pub fn instance_id(&self) -> Result<String> {
        let meta = self.db.open_tree("meta")?;
        if let Some(v) = meta.get("instance_id")? {
            return Ok(String::from_utf8_lossy(&v).into_owned());
        }
        let id = crate::secrets::new_id("");
        let _ = meta.compare_and_swap("instance_id", None as Option<&[u8]>, Some(id.as_bytes()))?;
        Ok(meta
            .get("instance_id")?
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or(id))
    }

    /// True if this state was created by an Orrery whose first-use authenticator let unknown
    /// names sign up by default (before `auth.firstuse.create_users` defaulted to false): such
    /// an install changes behaviour on upgrade unless its config sets the key.
    pub fn created_with_open_signup(&self) -> Result<bool> {
        let meta = self.db.open_tree("meta")?;
        Ok(meta.get(SIGNUP_DEFAULT_KEY)?.as_deref() == Some(b"open".as_slice()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` as one sled transaction over every tree of the store: what it writes (records,
    /// their index entries, the counts) is all applied or none of it is, even across a crash.
    /// sled runs transactions one at a time and may call `f` again after a conflict, so `f`
    /// must only read and write through the view it is given. The keys the transaction adds to
    /// or removes from the ranked trees reach their checkpoints (`rank.rs`) under the
    /// checkpoints' write lock, held from before the transaction to after, so a page never sees
    /// checkpoints that disagree with the trees.
    fn transact<R>(&self, f: impl Fn(&indexes::Tx) -> indexes::TxResult<R>) -> Result<R> {
        use sled::transaction::{TransactionError, Transactional};
        let trees: [&sled::Tree; 17] = [
            &self.users,
            &self.meta,
            &self.users_by_activity,
            &self.users_active,
            &self.users_ready,
            &self.active_by_activity,
            &self.ready_by_activity,
            &self.server_counts,
            &self.servers,
            &self.tokens,
            &self.tokens_by_owner,
            &self.sessions,
            &self.sessions_by_user,
            &self.oauth_clients,
            &self.clients_by_user,
            &self.groups,
            &self.group_members,
        ];
        let changes = std::cell::RefCell::new(Vec::new());
        let mut ranks = self.ranks.writer();
        let outcome = trees[..].transaction(|v| {
            changes.borrow_mut().clear();
            f(&indexes::Tx {
                changes: &changes,
                users: &v[0],
                meta: &v[1],
                users_by_activity: &v[2],
                users_active: &v[3],
                users_ready: &v[4],
                active_by_activity: &v[5],
                ready_by_activity: &v[6],
                server_counts: &v[7],
                servers: &v[8],
                tokens: &v[9],
                tokens_by_owner: &v[10],
                sessions: &v[11],
                sessions_by_user: &v[12],
                oauth_clients: &v[13],
                clients_by_user: &v[14],
                groups: &v[15],
                group_members: &v[16],
            })
        });
        match outcome {
            Ok(r) => {
                ranks.apply(&changes.borrow());
                Ok(r)
            }
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(StateError::Db(e)),
        }
    }

    /// Make everything written so far durable.
    pub async fn flush(&self) -> Result<()> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// Every key and value in every tree, as text: for `orrery doctor --dump` and for tests
    /// that prove no secret is stored in the clear.
    pub fn dump(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for name in self.db.tree_names() {
            let Ok(tree) = self.db.open_tree(&name) else {
                continue;
            };
            let tname = String::from_utf8_lossy(&name).into_owned();
            for (k, v) in tree.iter().flatten() {
                out.push((
                    tname.clone(),
                    String::from_utf8_lossy(&k).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                ));
            }
        }
        out
    }
}

/// sled's settings file ends with a CRC32 of the rest; sled itself only warns on a mismatch.
fn check_sled_conf(conf: &Path) -> std::result::Result<(), String> {
    let bytes = std::fs::read(conf).map_err(|e| format!("cannot read {}: {e}", conf.display()))?;
    if bytes.len() <= 8 {
        return Err(format!("{} is empty or truncated", conf.display()));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let expected = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(body) != expected {
        return Err(format!("{} fails its checksum", conf.display()));
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own plain structs to JSON cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(kind: &'static str, raw: &[u8]) -> Result<T> {
    serde_json::from_slice(raw).map_err(|source| StateError::Decode { kind, source })
}

fn get<T: DeserializeOwned>(tree: &sled::Tree, kind: &'static str, key: &str) -> Result<Option<T>> {
    tree.get(key)?.map(|raw| decode(kind, &raw)).transpose()
}

fn put<T: Serialize>(tree: &sled::Tree, key: &str, value: &T) -> Result<()> {
    tree.insert(key, encode(value))?;
    Ok(())
}

fn all<T: DeserializeOwned>(tree: &sled::Tree, kind: &'static str) -> Result<Vec<T>> {
    tree.iter().values().map(|v| decode(kind, &v?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::UserRecord;

    #[test]
    fn future_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .db
                .open_tree("meta")
                .unwrap()
                .insert("schema_version", "99")
                .unwrap();
            store.db.flush().unwrap();
        }
        let err = Store::open(dir.path()).err().expect("must refuse");
        assert!(
            matches!(err, StateError::FutureSchema { found: 99, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("newer Orrery"));
    }

    /// A database as Orrery wrote it at schema version 1 (no membership index).
    fn write_v1_state(dir: &Path) {
        let db = sled::Config::new().path(dir.join(DB_DIR)).open().unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert("schema_version", "1").unwrap();
        meta.insert("instance_id", "inst-v1").unwrap();
        meta.insert(SIGNUP_DEFAULT_KEY, "closed").unwrap();
        let users = db.open_tree("users").unwrap();
        for name in ["alice", "bob"] {
            users.insert(name, encode(&UserRecord::new(name))).unwrap();
        }
        let ta = GroupRecord {
            name: "ta".into(),
            users: ["alice".to_string(), "bob".to_string()].into(),
            ..Default::default()
        };
        db.open_tree("groups")
            .unwrap()
            .insert("ta", encode(&ta))
            .unwrap();
        db.flush().unwrap();
    }

    fn raw_schema_version(db_dir: &Path) -> String {
        // A store just dropped may hold sled's file lock for a moment (its flusher thread),
        // as Store::open allows for.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let db = loop {
            match sled::Config::new().path(db_dir).open() {
                Ok(db) => break db,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("{}: {e}", db_dir.display()),
            }
        };
        let v = db.open_tree("meta").unwrap().get("schema_version").unwrap();
        String::from_utf8(v.unwrap().to_vec()).unwrap()
    }

    #[test]
    fn a_version_1_state_is_migrated_forward_and_the_old_database_kept() {
        let dir = tempfile::tempdir().unwrap();
        write_v1_state(dir.path());
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(store.groups_of("alice").unwrap(), vec!["ta".to_string()]);
            assert_eq!(store.groups_of("carol").unwrap(), Vec::<String>::new());
            assert_eq!(store.instance_id().unwrap(), "inst-v1");
            assert_eq!(store.users().unwrap().len(), 2);
        }
        assert_eq!(raw_schema_version(&dir.path().join(DB_DIR)), "3");
        let kept = dir.path().join("sled.schema-v1.backup");
        assert_eq!(
            raw_schema_version(&kept),
            "1",
            "the database before the migration is kept"
        );
        assert!(!dir.path().join("sled.pre-open").exists());
        // Opening again migrates nothing and still answers from the index.
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.groups_of("bob").unwrap(), vec!["ta".to_string()]);
    }

    #[test]
    fn the_membership_index_follows_every_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut g = GroupRecord {
            name: "physics".into(),
            users: ["alice".to_string(), "bob".to_string()].into(),
            ..Default::default()
        };
        store.put_group(&g).unwrap();
        store
            .put_group(&GroupRecord {
                name: "ta".into(),
                users: ["bob".to_string()].into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(store.groups_of("bob").unwrap(), vec!["physics", "ta"]);
        g.users = ["bob".to_string(), "carol".to_string()].into();
        store.put_group(&g).unwrap();
        assert!(store.groups_of("alice").unwrap().is_empty());
        assert_eq!(store.groups_of("carol").unwrap(), vec!["physics"]);
        store.put_user(&UserRecord::new("bob")).unwrap();
        store.delete_user("bob").unwrap();
        assert!(store.groups_of("bob").unwrap().is_empty());
        assert!(store.delete_group("physics").unwrap());
        assert!(!store.delete_group("physics").unwrap());
        assert!(store.groups_of("carol").unwrap().is_empty());
    }

    #[test]
    fn an_export_imports_into_a_fresh_directory_with_its_instance_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put_user(&UserRecord::new("alice")).unwrap();
        store
            .put_group(&GroupRecord {
                name: "ta".into(),
                users: ["alice".to_string()].into(),
                ..Default::default()
            })
            .unwrap();
        let id = store.instance_id().unwrap();
        let copy: StateExport =
            serde_json::from_str(&serde_json::to_string(&store.export().unwrap()).unwrap())
                .unwrap();
        assert_eq!(copy.count("users"), 1);

        let fresh = tempfile::tempdir().unwrap();
        let restored = Store::import(fresh.path(), &copy).unwrap();
        assert_eq!(restored.instance_id().unwrap(), id);
        assert!(restored.user("alice").unwrap().is_some());
        assert_eq!(restored.groups_of("alice").unwrap(), vec!["ta"]);
        drop(restored);
        // Never over an existing database.
        assert!(matches!(
            Store::import(fresh.path(), &copy),
            Err(StateError::Conflict(_))
        ));
        // A copy from a newer Orrery is refused; one from an older one is migrated.
        let mut newer = copy.clone();
        newer.schema_version = SCHEMA_VERSION + 1;
        let other = tempfile::tempdir().unwrap();
        assert!(matches!(
            Store::import(other.path(), &newer),
            Err(StateError::FutureSchema { .. })
        ));
        let mut older = copy.clone();
        older.schema_version = 1;
        older.trees.remove(migrate::GROUP_MEMBERS);
        let store = Store::import(other.path(), &older).unwrap();
        assert_eq!(store.groups_of("alice").unwrap(), vec!["ta"]);
        assert!(other.path().join("sled.schema-v1.backup").exists());
    }

    #[test]
    fn opening_a_database_another_holds_changes_nothing_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Store::open(dir.path()).unwrap();
        daemon.put_user(&UserRecord::new("before")).unwrap();
        daemon.db.flush().unwrap();
        // A CLI command (doctor, users) while the daemon holds the lock: refused...
        assert!(matches!(
            Store::open(dir.path()),
            Err(StateError::Open { .. })
        ));
        // ...and the daemon's database is still the live one: what it writes next is kept.
        daemon.put_user(&UserRecord::new("after")).unwrap();
        daemon.db.flush().unwrap();
        drop(daemon);
        let reopened = Store::open(dir.path()).unwrap();
        assert!(reopened.user("before").unwrap().is_some());
        assert!(
            reopened.user("after").unwrap().is_some(),
            "a write after the refused open was lost"
        );
        assert!(!dir.path().join("sled.pre-open").exists());
    }

    /// Every page the store walks equals the same page of a full scan sorted in memory, for
    /// random names, prefixes, directions, offsets and limits.
    #[test]
    fn a_page_by_name_equals_the_same_page_of_a_full_scan() {
        use rand::{Rng, SeedableRng};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(20261202);
        let letters = ['a', 'b', 'c', 'd'];
        for _ in 0..300 {
            let len = rng.gen_range(1..6);
            let name: String = (0..len).map(|_| letters[rng.gen_range(0..4)]).collect();
            store.put_user(&UserRecord::new(&name)).unwrap();
        }
        let mut all: Vec<String> = store.users().unwrap().into_iter().map(|u| u.name).collect();
        all.sort();
        for _ in 0..200 {
            let prefix: String = (0..rng.gen_range(0..3))
                .map(|_| letters[rng.gen_range(0..4)])
                .collect();
            let descending = rng.gen_bool(0.5);
            let (offset, limit) = (rng.gen_range(0..80), rng.gen_range(1..40));
            let mut expected: Vec<&String> =
                all.iter().filter(|n| n.starts_with(&prefix)).collect();
            assert_eq!(
                store.count_users_with_prefix(&prefix),
                expected.len(),
                "{prefix:?}"
            );
            if descending {
                expected.reverse();
            }
            let expected: Vec<&String> = expected.into_iter().skip(offset).take(limit).collect();
            let got: Vec<String> = store
                .users_page_by_name(&prefix, descending, offset, limit)
                .unwrap()
                .into_iter()
                .map(|u| u.name)
                .collect();
            assert_eq!(
                got.iter().collect::<Vec<_>>(),
                expected,
                "prefix {prefix:?} descending {descending} offset {offset} limit {limit}"
            );
        }
    }

    #[test]
    fn garbage_version_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .db
                .open_tree("meta")
                .unwrap()
                .insert("schema_version", "banana")
                .unwrap();
            store.db.flush().unwrap();
        }
        assert!(matches!(
            Store::open(dir.path()),
            Err(StateError::Corrupt { .. })
        ));
    }

    #[test]
    fn damaged_database_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_user(&UserRecord::new("alice")).unwrap();
            store.db.flush().unwrap();
        }
        // Damage the settings file: refused before sled touches anything.
        let conf = dir.path().join(DB_DIR).join("conf");
        let good_conf = std::fs::read(&conf).unwrap();
        std::fs::write(&conf, b"garbage garbage garbage").unwrap();
        assert!(matches!(
            Store::open(dir.path()),
            Err(StateError::Corrupt { .. })
        ));
        assert_eq!(std::fs::read(&conf).unwrap(), b"garbage garbage garbage");
        // Replace the database with noise: sled would start empty; we refuse and restore.
        std::fs::write(&conf, &good_conf).unwrap();
        let db = dir.path().join(DB_DIR).join("db");
        let noise: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        std::fs::write(&db, &noise).unwrap();
        let err = Store::open(dir.path()).err().expect("must refuse");
        assert!(err.to_string().contains("damaged"), "{err}");
        assert_eq!(
            std::fs::read(&db).unwrap(),
            noise,
            "the damaged file is kept for recovery"
        );
    }

    #[test]
    fn reopens_current_schema() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        Store::open(dir.path()).unwrap();
    }
}
