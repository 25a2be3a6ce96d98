//! Counts kept in the `meta` tree (users, groups, users with an active or a ready server),
//! changed in the same transaction as the records they count, so a list's total
//! (`_pagination.total`) is one read instead of a walk over every key.

use sled::transaction::TransactionalTree;

use super::indexes::{Tx, TxResult};
use super::Result;

/// One count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Counter {
    /// User records.
    Users,
    /// Group records.
    Groups,
    /// Users with at least one server record (`indexes::USERS_ACTIVE`).
    ActiveUsers,
    /// Users with a ready server (`indexes::USERS_READY`).
    ReadyUsers,
}

impl Counter {
    /// Its key in the `meta` tree.
    pub(super) fn key(self) -> &'static [u8] {
        match self {
            Counter::Users => b"count/users",
            Counter::Groups => b"count/groups",
            Counter::ActiveUsers => b"count/users_active",
            Counter::ReadyUsers => b"count/users_ready",
        }
    }
}

fn from_bytes(raw: Option<&[u8]>) -> u64 {
    raw.and_then(|r| <[u8; 8]>::try_from(r).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// Add `delta` to a count inside a transaction (never below zero).
pub(super) fn add(tx: &Tx, counter: Counter, delta: i64) -> TxResult<()> {
    add_in(tx.meta, counter, delta)
}

fn add_in(meta: &TransactionalTree, counter: Counter, delta: i64) -> TxResult<()> {
    let now = from_bytes(meta.get(counter.key())?.as_deref());
    let next = now.saturating_add_signed(delta);
    meta.insert(counter.key(), next.to_be_bytes().as_slice())?;
    Ok(())
}

/// A count as stored.
pub(super) fn read(meta: &sled::Tree, counter: Counter) -> Result<u64> {
    Ok(from_bytes(meta.get(counter.key())?.as_deref()))
}

/// Set a count outright (the migration that counts the records).
pub(super) fn set(meta: &sled::Tree, counter: Counter, value: u64) -> Result<()> {
    meta.insert(counter.key(), value.to_be_bytes().as_slice())?;
    Ok(())
}
