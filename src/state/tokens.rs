//! API tokens: user tokens, server tokens, OAuth access tokens. Keyed by the SHA-256 of the
//! token; the token itself is shown once, at creation, and never stored.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::indexes::{decode_tx, pair_key, pair_prefix, Tx, TxResult};
use super::{all, get, Result, Store};

/// Who a token acts for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub enum TokenOwner {
    User(String),
    Service(String),
}

/// Why a token exists; decides its default scopes and when it is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// Made by a user or admin through the API or the token page.
    Api,
    /// A single-user server's own token (also its OAuth client secret); revoked when it stops.
    Server,
    /// Issued by the OAuth provider to a client on a user's behalf.
    OAuth,
    /// A single-user server's token for Orrery's kernel gateway (`kernels.remote`); carries no
    /// hub API scopes and is revoked with the server token.
    Gateway,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public identifier used in URLs (`/users/{name}/tokens/{id}`).
    pub id: String,
    /// SHA-256 of the token, hex: the key of the record.
    pub hash: String,
    /// The first characters of the token, for people to recognise it.
    pub prefix: String,
    pub owner: TokenOwner,
    pub kind: TokenKind,
    /// Scopes as requested (possibly with filters); effective scopes are these intersected with
    /// the owner's at use time, so demoting an admin also weakens their tokens.
    pub scopes: Vec<String>,
    pub note: String,
    pub created: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_activity: Option<DateTime<Utc>>,
    /// For OAuth tokens: the client they were issued to.
    #[serde(default)]
    pub oauth_client: Option<String>,
    /// For server tokens: the server name ("" for the default server).
    #[serde(default)]
    pub server: Option<String>,
}

impl TokenRecord {
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
}

/// The owner's part of a key in the tokens-by-owner index: `u:<user>` or `s:<service>`.
pub(super) fn owner_key(owner: &TokenOwner) -> String {
    match owner {
        TokenOwner::User(n) => format!("u:{n}"),
        TokenOwner::Service(n) => format!("s:{n}"),
    }
}

impl Store {
    pub fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        get(&self.tokens, "token", hash)
    }

    /// Every token (a full scan: for backups and the few cleanups that match on something
    /// other than the owner).
    pub fn tokens(&self) -> Result<Vec<TokenRecord>> {
        all(&self.tokens, "token")
    }

    /// `owner`'s tokens, through the tokens-by-owner index: costs the owner's tokens only.
    pub fn tokens_of(&self, owner: &TokenOwner) -> Result<Vec<TokenRecord>> {
        let prefix = pair_prefix(&owner_key(owner));
        let mut out = Vec::new();
        for key in self.tokens_by_owner.scan_prefix(&prefix).keys() {
            let key = key?;
            if let Some(raw) = self.tokens.get(&key[prefix.len()..])? {
                out.push(super::decode("token", &raw)?);
            }
        }
        Ok(out)
    }

    pub fn token_by_id(&self, owner: &TokenOwner, id: &str) -> Result<Option<TokenRecord>> {
        Ok(self.tokens_of(owner)?.into_iter().find(|t| t.id == id))
    }

    /// Store a token (new or changed) with its index entry, in one transaction.
    pub fn put_token(&self, token: &TokenRecord) -> Result<()> {
        let bytes = super::encode(token);
        let key = pair_key(&owner_key(&token.owner), &token.hash);
        self.transact(|tx| {
            remove_token_in(tx, &token.hash)?;
            tx.tokens.insert(token.hash.as_bytes(), bytes.as_slice())?;
            tx.tokens_by_owner.insert(key.as_slice(), &[])?;
            Ok(())
        })
    }

    pub fn delete_token(&self, hash: &str) -> Result<bool> {
        self.transact(|tx| remove_token_in(tx, hash))
    }

    /// Remove every token matching `pred`; returns how many. Reads every token: callers that
    /// know the owner use [`Store::delete_tokens_of_where`].
    pub fn delete_tokens_where(&self, pred: impl Fn(&TokenRecord) -> bool) -> Result<usize> {
        let mut n = 0;
        for t in self.tokens()? {
            if pred(&t) && self.delete_token(&t.hash)? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Remove `owner`'s tokens matching `pred`; returns how many (costs the owner's tokens).
    pub fn delete_tokens_of_where(
        &self,
        owner: &TokenOwner,
        pred: impl Fn(&TokenRecord) -> bool,
    ) -> Result<usize> {
        let mut n = 0;
        for t in self.tokens_of(owner)? {
            if pred(&t) && self.delete_token(&t.hash)? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Record use of a token (at most this precise; callers throttle).
    pub fn touch_token(&self, hash: &str, when: DateTime<Utc>) -> Result<()> {
        if let Some(mut t) = self.token_by_hash(hash)? {
            t.last_activity = Some(when);
            self.put_token(&t)?;
        }
        Ok(())
    }
}

/// Remove the token `hash` and its index entry inside a transaction; whether it existed.
fn remove_token_in(tx: &Tx, hash: &str) -> TxResult<bool> {
    let Some(raw) = tx.tokens.remove(hash.as_bytes())? else {
        return Ok(false);
    };
    let old: TokenRecord = decode_tx("token", &raw)?;
    tx.tokens_by_owner
        .remove(pair_key(&owner_key(&old.owner), hash))?;
    Ok(true)
}
