//! Browser login sessions, keyed by the SHA-256 of the session id held in the login cookie.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{all, get, put, Result, Store};

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

    pub fn put_session(&self, s: &SessionRecord) -> Result<()> {
        put(&self.sessions, &s.hash, s)
    }

    pub fn delete_session(&self, hash: &str) -> Result<bool> {
        Ok(self.sessions.remove(hash)?.is_some())
    }

    pub fn sessions_all(&self) -> Result<Vec<SessionRecord>> {
        all(&self.sessions, "session")
    }

    /// Drop expired sessions; returns how many.
    pub fn purge_expired_sessions(&self, now: DateTime<Utc>) -> Result<usize> {
        let mut n = 0;
        for s in self.sessions_all()? {
            if s.expires_at <= now {
                self.sessions.remove(&s.hash)?;
                n += 1;
            }
        }
        Ok(n)
    }
}
