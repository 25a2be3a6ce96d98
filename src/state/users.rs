//! User records: who exists, who is an admin, and the password hash for the built-in
//! authenticators.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use std::cell::RefCell;

use super::counts::{self, Counter};
use super::groups::replace_group_in;
use super::indexes::{apply_user_facts, decode_tx, pair_prefix, ServerCounts, UserFacts};
use super::tokens::owner_key;
use super::{all, get, GroupRecord, ManagedBy, Result, Store, TokenOwner};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Normalised name ([`crate::username::normalize`]); the key of the record.
    pub name: String,
    /// Admin granted through the API or admin page. Admins listed in config are admins whatever
    /// this says (see [`crate::hub::Hub::is_admin`]).
    pub admin: bool,
    pub created: DateTime<Utc>,
    /// Last time the user or one of their servers was seen doing something.
    pub last_activity: Option<DateTime<Utc>>,
    /// argon2id hash, for the firstuse and native authenticators. None: no password set yet.
    #[serde(default)]
    pub password_hash: Option<String>,
    /// Server name ("" for the default) → the `user_options` of its last start, reused by a
    /// start that chooses nothing (the spawn form preselects them too).
    #[serde(default)]
    pub server_options: std::collections::BTreeMap<String, serde_json::Value>,
    /// The identity provider's account this name belongs to (`ldap:<dn>`), bound at its first
    /// login through the provider: another account mapped to the same name is refused.
    #[serde(default)]
    pub identity: Option<String>,
    /// The OpenID provider's refresh token, sealed ([`crate::secrets::seal`], key in the state
    /// directory): to refresh the user's groups and rights before a spawn.
    #[serde(default)]
    pub provider_refresh: Option<String>,
}

impl UserRecord {
    pub fn new(name: &str) -> UserRecord {
        UserRecord {
            name: name.to_string(),
            admin: false,
            created: Utc::now(),
            last_activity: None,
            password_hash: None,
            server_options: Default::default(),
            identity: None,
            provider_refresh: None,
        }
    }
}

impl Store {
    pub fn user(&self, name: &str) -> Result<Option<UserRecord>> {
        get(&self.users, "user", name)
    }

    /// Every user, in name order (a full scan: for the CLI, the culler and the metrics, not for
    /// lists, which page: `pages.rs`).
    pub fn users(&self) -> Result<Vec<UserRecord>> {
        all(&self.users, "user")
    }

    /// How many users there are: the count kept beside the records, one read.
    pub fn user_count(&self) -> usize {
        counts::read(&self.meta, Counter::Users).unwrap_or(0) as usize
    }

    /// How many users' names start with `prefix`: "" reads the kept count; any other prefix
    /// counts the matching keys (no record is decoded), which costs the matches.
    pub fn count_users_with_prefix(&self, prefix: &str) -> usize {
        if prefix.is_empty() {
            return self.user_count();
        }
        self.users.scan_prefix(prefix.as_bytes()).keys().count()
    }

    /// One page of the users whose names start with `prefix`, in name order (`descending`:
    /// reversed): see [`Store::users_page`].
    pub fn users_page_by_name(
        &self,
        prefix: &str,
        descending: bool,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<UserRecord>> {
        let order = if descending {
            super::UserOrder::NameDesc
        } else {
            super::UserOrder::Name
        };
        self.users_page(
            &super::UserQuery {
                prefix,
                order,
                state: super::UserState::Any,
            },
            offset,
            limit,
        )
    }

    /// Store `user` (new or changed), with its index entries and the count.
    pub fn put_user(&self, user: &UserRecord) -> Result<()> {
        let bytes = super::encode(user);
        self.transact(|tx| {
            let old = UserFacts::read(tx, &user.name)?;
            tx.users.insert(user.name.as_bytes(), bytes.as_slice())?;
            let new = UserFacts {
                exists: true,
                last_activity: user.last_activity,
                ..old
            };
            apply_user_facts(tx, &user.name, &old, &new)
        })
    }

    /// Create a user unless the name exists; returns false if it already did.
    pub fn create_user(&self, user: &UserRecord) -> Result<bool> {
        let bytes = super::encode(user);
        self.transact(|tx| {
            let old = UserFacts::read(tx, &user.name)?;
            if old.exists {
                return Ok(false);
            }
            tx.users.insert(user.name.as_bytes(), bytes.as_slice())?;
            let new = UserFacts {
                exists: true,
                last_activity: user.last_activity,
                ..old
            };
            apply_user_facts(tx, &user.name, &old, &new)?;
            Ok(true)
        })
    }

    /// Apply `f` to a user atomically, with its index entries. None if no such user.
    pub fn update_user(
        &self,
        name: &str,
        f: impl FnMut(&mut UserRecord),
    ) -> Result<Option<UserRecord>> {
        // sled may run the transaction again after a conflict; `f` runs on a fresh copy each
        // time, as `update_and_fetch` did before.
        let f = RefCell::new(f);
        self.transact(|tx| {
            let Some(raw) = tx.users.get(name.as_bytes())? else {
                return Ok(None);
            };
            let mut rec: UserRecord = decode_tx("user", &raw)?;
            let old = UserFacts {
                exists: true,
                last_activity: rec.last_activity,
                servers: ServerCounts::get(tx, name)?,
            };
            (f.borrow_mut())(&mut rec);
            // The record's key is its name: `f` changes the rest only.
            rec.name = name.to_string();
            tx.users.insert(name.as_bytes(), super::encode(&rec))?;
            let new = UserFacts {
                last_activity: rec.last_activity,
                ..old
            };
            apply_user_facts(tx, name, &old, &new)?;
            Ok(Some(rec))
        })
    }

    /// Remove a user record and everything that only makes sense with it: tokens, sessions,
    /// OAuth clients, group memberships, and its index entries, in one transaction. Each is
    /// found through its index (the user's tokens, sessions, clients, groups), not by reading
    /// every record. Server records are left for the caller to stop first.
    pub fn delete_user(&self, name: &str) -> Result<bool> {
        let tokens = keys_under(
            &self.tokens_by_owner,
            &pair_prefix(&owner_key(&TokenOwner::User(name.to_string()))),
        )?;
        let sessions = keys_under(&self.sessions_by_user, &pair_prefix(name))?;
        let clients = keys_under(&self.clients_by_user, &pair_prefix(name))?;
        let groups = self.groups_of(name)?;
        self.forget_shares_of_user(name)?;
        self.transact(|tx| {
            let old = UserFacts::read(tx, name)?;
            tx.users.remove(name.as_bytes())?;
            let gone = UserFacts {
                servers: old.servers,
                ..Default::default()
            };
            apply_user_facts(tx, name, &old, &gone)?;
            for (key, hash) in &tokens {
                tx.tokens.remove(hash.as_slice())?;
                tx.tokens_by_owner.remove(key.as_slice())?;
            }
            for (key, hash) in &sessions {
                tx.sessions.remove(hash.as_slice())?;
                tx.sessions_by_user.remove(key.as_slice())?;
            }
            for (key, id) in &clients {
                tx.oauth_clients.remove(id.as_slice())?;
                tx.clients_by_user.remove(key.as_slice())?;
            }
            // A config-managed group keeps the name: its members are the config's, and a user
            // created again under that name is a member again, as the config says.
            for g in &groups {
                let Some(raw) = tx.groups.get(g.as_bytes())? else {
                    continue;
                };
                let mut group: GroupRecord = decode_tx("group", &raw)?;
                if group.managed_by != ManagedBy::Config && group.users.remove(name) {
                    replace_group_in(tx, g, Some(&group))?;
                }
            }
            Ok(old.exists)
        })
    }
}

/// The keys of `tree` under `prefix`, each with what follows the prefix.
fn keys_under(tree: &sled::Tree, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    tree.scan_prefix(prefix)
        .keys()
        .map(|k| {
            let k = k?;
            Ok((k.to_vec(), k[prefix.len()..].to_vec()))
        })
        .collect()
}
