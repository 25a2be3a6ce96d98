//! User records: who exists, who is an admin, and the password hash for the built-in
//! authenticators.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{all, get, put, Result, Store};

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
        }
    }
}

impl Store {
    pub fn user(&self, name: &str) -> Result<Option<UserRecord>> {
        get(&self.users, "user", name)
    }

    pub fn users(&self) -> Result<Vec<UserRecord>> {
        all(&self.users, "user")
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// How many users' names start with `prefix` ("" for all): keys are counted, no record is
    /// decoded.
    pub fn count_users_with_prefix(&self, prefix: &str) -> usize {
        if prefix.is_empty() {
            return self.users.len();
        }
        self.users.scan_prefix(prefix.as_bytes()).keys().count()
    }

    /// One page of the users whose names start with `prefix`, in name order (`descending`:
    /// reversed): the keys are walked (they are the names, sled keeps them sorted) and only the
    /// page's records decoded.
    pub fn users_page_by_name(
        &self,
        prefix: &str,
        descending: bool,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<UserRecord>> {
        let scan = self.users.scan_prefix(prefix.as_bytes());
        let page: Vec<sled::IVec> = if descending {
            scan.rev()
                .skip(offset)
                .take(limit)
                .map(|kv| kv.map(|(_, v)| v))
                .collect::<std::result::Result<_, _>>()?
        } else {
            scan.skip(offset)
                .take(limit)
                .map(|kv| kv.map(|(_, v)| v))
                .collect::<std::result::Result<_, _>>()?
        };
        page.iter().map(|raw| super::decode("user", raw)).collect()
    }

    pub fn put_user(&self, user: &UserRecord) -> Result<()> {
        put(&self.users, &user.name, user)
    }

    /// Create a user unless the name exists; returns false if it already did.
    pub fn create_user(&self, user: &UserRecord) -> Result<bool> {
        let swapped = self.users.compare_and_swap(
            user.name.as_bytes(),
            None as Option<&[u8]>,
            Some(super::encode(user)),
        )?;
        Ok(swapped.is_ok())
    }

    /// Apply `f` to a user atomically (retrying on concurrent change). None if no such user.
    pub fn update_user(
        &self,
        name: &str,
        mut f: impl FnMut(&mut UserRecord),
    ) -> Result<Option<UserRecord>> {
        let mut out = None;
        let mut decode_err = None;
        self.users.update_and_fetch(name, |old| {
            let old = old?;
            match serde_json::from_slice::<UserRecord>(old) {
                Ok(mut rec) => {
                    f(&mut rec);
                    let bytes = super::encode(&rec);
                    out = Some(rec);
                    Some(bytes)
                }
                Err(e) => {
                    decode_err = Some(e);
                    Some(old.to_vec())
                }
            }
        })?;
        if let Some(source) = decode_err {
            return Err(super::StateError::Decode {
                kind: "user",
                source,
            });
        }
        Ok(out)
    }

    /// Remove a user record and everything that only makes sense with it: tokens, sessions,
    /// OAuth clients, group memberships. Server records are left for the caller to stop first.
    pub fn delete_user(&self, name: &str) -> Result<bool> {
        let existed = self.users.remove(name)?.is_some();
        self.forget_shares_of_user(name)?;
        for t in self.tokens()? {
            if t.owner == super::TokenOwner::User(name.to_string()) {
                self.tokens.remove(&t.hash)?;
            }
        }
        for s in self.sessions_all()? {
            if s.user == name {
                self.sessions.remove(&s.hash)?;
            }
        }
        for c in self.oauth_clients()? {
            if c.user.as_deref() == Some(name) {
                self.oauth_clients.remove(&c.id)?;
            }
        }
        // A config-managed group keeps the name: its members are the config's, and a user
        // created again under that name is a member again, as the config says.
        for mut g in self.groups()? {
            if g.managed_by != super::ManagedBy::Config && g.users.remove(name) {
                self.put_group(&g)?;
            }
        }
        Ok(existed)
    }
}
