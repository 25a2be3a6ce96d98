//! OAuth clients (one per running single-user server, plus config services) and the short-lived
//! authorization codes issued to them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::indexes::{decode_tx, pair_key, Tx, TxResult};
use super::{all, get, put, Result, Store};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OAuthClientRecord {
    /// `jupyterhub-user-<name>` for a user's server, `service-<name>` for a service.
    pub id: String,
    /// SHA-256 of the client secret (for a server: its API token).
    pub secret_hash: String,
    /// The only redirect URI accepted, compared exactly (may be relative).
    pub redirect_uri: String,
    /// Scopes a token issued to this client may carry (intersected with the user's own).
    pub access_scopes: Vec<String>,
    /// The user whose server this client is, if any.
    pub user: Option<String>,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OAuthCodeRecord {
    /// SHA-256 of the code.
    pub hash: String,
    pub client_id: String,
    pub user: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    pub fn oauth_client(&self, id: &str) -> Result<Option<OAuthClientRecord>> {
        get(&self.oauth_clients, "oauth client", id)
    }

    pub fn oauth_clients(&self) -> Result<Vec<OAuthClientRecord>> {
        all(&self.oauth_clients, "oauth client")
    }

    /// Store a client with its entry in the clients-by-user index, in one transaction.
    pub fn put_oauth_client(&self, c: &OAuthClientRecord) -> Result<()> {
        let bytes = super::encode(c);
        self.transact(|tx| {
            remove_client_in(tx, &c.id)?;
            tx.oauth_clients.insert(c.id.as_bytes(), bytes.as_slice())?;
            if let Some(user) = &c.user {
                tx.clients_by_user.insert(pair_key(user, &c.id), &[])?;
            }
            Ok(())
        })
    }

    pub fn delete_oauth_client(&self, id: &str) -> Result<bool> {
        self.transact(|tx| remove_client_in(tx, id))
    }

    pub fn put_oauth_code(&self, c: &OAuthCodeRecord) -> Result<()> {
        put(&self.oauth_codes, &c.hash, c)
    }

    /// Take a code out of the store: a code works once, whatever happens next.
    pub fn take_oauth_code(&self, hash: &str) -> Result<Option<OAuthCodeRecord>> {
        match self.oauth_codes.remove(hash)? {
            Some(raw) => super::decode("oauth code", &raw).map(Some),
            None => Ok(None),
        }
    }

    /// Drop expired codes; returns how many.
    pub fn purge_expired_codes(&self, now: DateTime<Utc>) -> Result<usize> {
        let mut n = 0;
        for c in all::<OAuthCodeRecord>(&self.oauth_codes, "oauth code")? {
            if c.expires_at <= now {
                self.oauth_codes.remove(&c.hash)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Remove the client `id` and its index entry inside a transaction; whether it existed.
fn remove_client_in(tx: &Tx, id: &str) -> TxResult<bool> {
    let Some(raw) = tx.oauth_clients.remove(id.as_bytes())? else {
        return Ok(false);
    };
    let old: OAuthClientRecord = decode_tx("oauth client", &raw)?;
    if let Some(user) = &old.user {
        tx.clients_by_user.remove(pair_key(user, id))?;
    }
    Ok(true)
}
