//! Secondary indexes: sled trees whose sorted keys answer the lists (users by last activity,
//! users with an active or a ready server, tokens by owner, sessions and OAuth clients by user)
//! without reading every record. Every index entry is written in the same sled transaction as
//! the record it indexes ([`Tx`], a view of every tree of the store), so a crash never leaves
//! a record without its entry or an entry without its record.
//!
//! A user's place in the user indexes depends on a few facts only ([`UserFacts`]: whether the
//! record exists, its last activity, how many servers and ready servers it has);
//! [`apply_user_facts`] moves the entries (and the counts, `counts.rs`) from the facts before a
//! write to the facts after it.

use chrono::{DateTime, Utc};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::counts::{self, Counter};
use super::rank::{Change, Ranked};
use super::StateError;

/// `activity key` → empty: every user, ordered by last activity (never active first), then
/// name.
pub(super) const USERS_BY_ACTIVITY: &str = "idx_users_by_activity";
/// `name` → empty: the users with at least one server record (JupyterHub's `state=active`).
pub(super) const USERS_ACTIVE: &str = "idx_users_active";
/// `name` → empty: the users with a ready server that is not stopping or starting
/// (`state=ready`).
pub(super) const USERS_READY: &str = "idx_users_ready";
/// `activity key` → empty: the active users by last activity.
pub(super) const ACTIVE_BY_ACTIVITY: &str = "idx_active_by_activity";
/// `activity key` → empty: the ready users by last activity.
pub(super) const READY_BY_ACTIVITY: &str = "idx_ready_by_activity";
/// `name` → 8 bytes (servers, ready servers; u32 big-endian each): how many server records
/// each name has, kept even for a name with no user record (a stale server of a deleted
/// user), so a user created again under that name is indexed as what its servers say.
pub(super) const SERVER_COUNTS: &str = "idx_server_counts";
/// `owner key NUL token hash` → empty: a user's or a service's tokens.
pub(super) const TOKENS_BY_OWNER: &str = "idx_tokens_by_owner";
/// `user NUL session hash` → empty: a user's browser sessions.
pub(super) const SESSIONS_BY_USER: &str = "idx_sessions_by_user";
/// `user NUL client id` → empty: the OAuth clients of a user's servers.
pub(super) const CLIENTS_BY_USER: &str = "idx_oauth_clients_by_user";

/// Every index tree, for the migration that builds them and the tests that check them.
pub(super) const ALL: [&str; 9] = [
    USERS_BY_ACTIVITY,
    USERS_ACTIVE,
    USERS_READY,
    ACTIVE_BY_ACTIVITY,
    READY_BY_ACTIVITY,
    SERVER_COUNTS,
    TOKENS_BY_OWNER,
    SESSIONS_BY_USER,
    CLIENTS_BY_USER,
];

/// The error a transaction's closure returns.
pub(super) type TxError = ConflictableTransactionError<StateError>;
/// What a transaction's closure returns.
pub(super) type TxResult<T> = std::result::Result<T, TxError>;

/// One transaction's view of every tree of the store, by name (built by
/// [`super::Store::transact`]).
pub(super) struct Tx<'a> {
    /// Keys this transaction adds to or removes from the ranked trees (`rank.rs`), applied to
    /// their checkpoints once it commits.
    pub changes: &'a std::cell::RefCell<Vec<Change>>,
    pub users: &'a TransactionalTree,
    /// Holds the counts (`counts.rs`).
    pub meta: &'a TransactionalTree,
    pub users_by_activity: &'a TransactionalTree,
    pub users_active: &'a TransactionalTree,
    pub users_ready: &'a TransactionalTree,
    pub active_by_activity: &'a TransactionalTree,
    pub ready_by_activity: &'a TransactionalTree,
    pub server_counts: &'a TransactionalTree,
    pub servers: &'a TransactionalTree,
    pub tokens: &'a TransactionalTree,
    pub tokens_by_owner: &'a TransactionalTree,
    pub sessions: &'a TransactionalTree,
    pub sessions_by_user: &'a TransactionalTree,
    pub oauth_clients: &'a TransactionalTree,
    pub clients_by_user: &'a TransactionalTree,
    pub groups: &'a TransactionalTree,
    pub group_members: &'a TransactionalTree,
}

/// Decode a record inside a transaction (a damaged record aborts it).
pub(super) fn decode_tx<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    raw: &[u8],
) -> TxResult<T> {
    super::decode(kind, raw).map_err(ConflictableTransactionError::Abort)
}

/// The key of `name` in an index ordered by last activity: never active (`None`) first, then
/// by time (seconds with the sign bit flipped and nanoseconds, big-endian, so bytes sort as
/// times do), then by name.
pub fn activity_key(when: Option<DateTime<Utc>>, name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(13 + name.len());
    match when {
        None => key.push(0),
        Some(t) => {
            key.push(1);
            key.extend_from_slice(&((t.timestamp() as u64) ^ (1 << 63)).to_be_bytes());
            key.extend_from_slice(&t.timestamp_subsec_nanos().to_be_bytes());
        }
    }
    key.extend_from_slice(name.as_bytes());
    key
}

/// The name at the end of an [`activity_key`].
pub fn name_of_activity_key(key: &[u8]) -> &[u8] {
    match key.first() {
        Some(0) => &key[1..],
        Some(_) if key.len() >= 13 => &key[13..],
        _ => &[],
    }
}

/// `a NUL b`: the key of a pair in an index listing the `b`s of an `a`.
pub(super) fn pair_key(a: &str, b: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(a.len() + b.len() + 1);
    key.extend_from_slice(a.as_bytes());
    key.push(0);
    key.extend_from_slice(b.as_bytes());
    key
}

/// `a NUL`: the prefix of every pair of `a`.
pub(super) fn pair_prefix(a: &str) -> Vec<u8> {
    let mut key = a.as_bytes().to_vec();
    key.push(0);
    key
}

/// What decides where a user is in the user indexes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct UserFacts {
    /// The user record exists; without it the user is in no index.
    pub exists: bool,
    pub last_activity: Option<DateTime<Utc>>,
    /// Server records of the name (see [`SERVER_COUNTS`]).
    pub servers: ServerCounts,
}

/// How many server records a name has, and how many of them are ready.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ServerCounts {
    pub servers: u32,
    pub ready: u32,
}

impl ServerCounts {
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&self.servers.to_be_bytes());
        b[4..].copy_from_slice(&self.ready.to_be_bytes());
        b
    }

    fn from_bytes(raw: &[u8]) -> ServerCounts {
        let word = |at: usize| {
            raw.get(at..at + 4)
                .and_then(|w| <[u8; 4]>::try_from(w).ok())
                .map(u32::from_be_bytes)
                .unwrap_or(0)
        };
        ServerCounts {
            servers: word(0),
            ready: word(4),
        }
    }

    /// Read the counts of `name` inside a transaction.
    pub fn get(tx: &Tx, name: &str) -> TxResult<ServerCounts> {
        Ok(tx
            .server_counts
            .get(name.as_bytes())?
            .map(|raw| ServerCounts::from_bytes(&raw))
            .unwrap_or_default())
    }

    /// Write the counts of `name` inside a transaction (none: the key goes).
    pub fn put(self, tx: &Tx, name: &str) -> TxResult<()> {
        if self == ServerCounts::default() {
            tx.server_counts.remove(name.as_bytes())?;
        } else {
            tx.server_counts
                .insert(name.as_bytes(), self.to_bytes().as_slice())?;
        }
        Ok(())
    }
}

impl UserFacts {
    /// The facts as the store holds them now, read inside a transaction.
    pub fn read(tx: &Tx, name: &str) -> TxResult<UserFacts> {
        let servers = ServerCounts::get(tx, name)?;
        Ok(match tx.users.get(name.as_bytes())? {
            Some(raw) => {
                let user: super::UserRecord = decode_tx("user", &raw)?;
                UserFacts {
                    exists: true,
                    last_activity: user.last_activity,
                    servers,
                }
            }
            None => UserFacts {
                servers,
                ..Default::default()
            },
        })
    }

    fn active(&self) -> bool {
        self.exists && self.servers.servers > 0
    }

    fn ready(&self) -> bool {
        self.exists && self.servers.ready > 0
    }
}

/// One set of users a user is in or not (all users, active, ready), and where it is kept.
struct Membership<'a> {
    /// In the set before the write.
    was: bool,
    /// In the set after it.
    is: bool,
    /// The set by name (None for all users: the records themselves are that).
    by_name: Option<&'a TransactionalTree>,
    /// The set by last activity.
    by_activity: &'a TransactionalTree,
    /// The ranked trees of the set by name and by last activity.
    ranked: (Ranked, Ranked),
    /// The set's size.
    counter: Counter,
}

/// Move `name`'s entries in the user indexes, and the counts, from what `old` says to what
/// `new` says (inside the transaction that writes the records those facts come from).
pub(super) fn apply_user_facts(
    tx: &Tx,
    name: &str,
    old: &UserFacts,
    new: &UserFacts,
) -> TxResult<()> {
    let old_key = activity_key(old.last_activity, name);
    let new_key = activity_key(new.last_activity, name);
    let sets = [
        Membership {
            was: old.exists,
            is: new.exists,
            by_name: None,
            by_activity: tx.users_by_activity,
            counter: Counter::Users,
            ranked: (Ranked::Users, Ranked::UsersByActivity),
        },
        Membership {
            was: old.active(),
            is: new.active(),
            by_name: Some(tx.users_active),
            by_activity: tx.active_by_activity,
            counter: Counter::ActiveUsers,
            ranked: (Ranked::UsersActive, Ranked::ActiveByActivity),
        },
        Membership {
            was: old.ready(),
            is: new.ready(),
            by_name: Some(tx.users_ready),
            by_activity: tx.ready_by_activity,
            counter: Counter::ReadyUsers,
            ranked: (Ranked::UsersReady, Ranked::ReadyByActivity),
        },
    ];
    for Membership {
        was,
        is,
        by_name,
        by_activity,
        counter,
        ranked: (ranked_name, ranked_activity),
    } in sets
    {
        let mut changes = tx.changes.borrow_mut();
        let mut change = |tree, key: &[u8], added| {
            changes.push(Change {
                tree,
                key: key.to_vec(),
                added,
            })
        };
        if was && (!is || old_key != new_key) {
            by_activity.remove(old_key.as_slice())?;
            change(ranked_activity, &old_key, false);
        }
        if is && (!was || old_key != new_key) {
            by_activity.insert(new_key.as_slice(), &[])?;
            change(ranked_activity, &new_key, true);
        }
        if was != is {
            change(ranked_name, name.as_bytes(), is);
            if let Some(tree) = by_name {
                if is {
                    tree.insert(name.as_bytes(), &[])?;
                } else {
                    tree.remove(name.as_bytes())?;
                }
            }
            counts::add(tx, counter, if is { 1 } else { -1 })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_keys_sort_as_times_with_never_first() {
        let t = |s: &str| Some(s.parse::<DateTime<Utc>>().unwrap());
        let keys = [
            activity_key(None, "zed"),
            activity_key(t("1960-01-01T00:00:00Z"), "a"),
            activity_key(t("2024-05-01T10:00:00Z"), "b"),
            activity_key(t("2024-05-01T10:00:00.000000001Z"), "a"),
            activity_key(t("2024-05-01T10:00:01Z"), "a"),
            activity_key(t("2024-05-01T10:00:01Z"), "b"),
        ];
        for w in keys.windows(2) {
            assert!(w[0] < w[1], "{w:?}");
        }
        assert_eq!(name_of_activity_key(&keys[0]), b"zed");
        assert_eq!(name_of_activity_key(&keys[4]), b"a");
    }
}
