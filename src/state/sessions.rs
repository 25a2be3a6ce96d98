//! Browser login sessions, keyed by the SHA-256 of the session id held in the login cookie.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::indexes::{decode_tx, pair_key, Tx, TxResult};
use super::{all, get, Result, Store};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// SHA-256 of the cookie's session id.
    pub hash: String,
    pub user: String,
    pub created: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    pub fn session(&self, hash: &str) -> Result<Option<SessionRecord>> {
        get(&self.sessions, "session", hash)
    }

    /// Store a session with its entry in the sessions-by-user index, in one transaction.
    pub fn put_session(&self, s: &SessionRecord) -> Result<()> {
        let bytes = super::encode(s);
        self.transact(|tx| {
            remove_session_in(tx, &s.hash)?;
            tx.sessions.insert(s.hash.as_bytes(), bytes.as_slice())?;
            tx.sessions_by_user
                .insert(pair_key(&s.user, &s.hash), &[])?;
            Ok(())
        })
    }

    pub fn delete_session(&self, hash: &str) -> Result<bool> {
        self.transact(|tx| remove_session_in(tx, hash))
    }

    pub fn sessions_all(&self) -> Result<Vec<SessionRecord>> {
        all(&self.sessions, "session")
    }

    /// Drop expired sessions; returns how many.
    pub fn purge_expired_sessions(&self, now: DateTime<Utc>) -> Result<usize> {
        let mut n = 0;
        for s in self.sessions_all()? {
            if s.expires_at <= now && self.delete_session(&s.hash)? {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Remove the session `hash` and its index entry inside a transaction; whether it existed.
fn remove_session_in(tx: &Tx, hash: &str) -> TxResult<bool> {
    let Some(raw) = tx.sessions.remove(hash.as_bytes())? else {
        return Ok(false);
    };
    let old: SessionRecord = decode_tx("session", &raw)?;
    tx.sessions_by_user.remove(pair_key(&old.user, hash))?;
    Ok(true)
}
