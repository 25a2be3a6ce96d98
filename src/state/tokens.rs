//! API tokens: user tokens, server tokens, OAuth access tokens. Keyed by the SHA-256 of the
//! token; the token itself is shown once, at creation, and never stored.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{all, get, put, Result, Store};

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

impl Store {
    pub fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        get(&self.tokens, "token", hash)
    }

    pub fn tokens(&self) -> Result<Vec<TokenRecord>> {
        all(&self.tokens, "token")
    }

    pub fn tokens_of(&self, owner: &TokenOwner) -> Result<Vec<TokenRecord>> {
        Ok(self
            .tokens()?
            .into_iter()
            .filter(|t| &t.owner == owner)
            .collect())
    }

    pub fn token_by_id(&self, owner: &TokenOwner, id: &str) -> Result<Option<TokenRecord>> {
        Ok(self.tokens_of(owner)?.into_iter().find(|t| t.id == id))
    }

    pub fn put_token(&self, token: &TokenRecord) -> Result<()> {
        put(&self.tokens, &token.hash, token)
    }

    pub fn delete_token(&self, hash: &str) -> Result<bool> {
        Ok(self.tokens.remove(hash)?.is_some())
    }

    /// Remove every token matching `pred`; returns how many.
    pub fn delete_tokens_where(&self, pred: impl Fn(&TokenRecord) -> bool) -> Result<usize> {
        let mut n = 0;
        for t in self.tokens()? {
            if pred(&t) {
                self.tokens.remove(&t.hash)?;
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
