//! Shares and share codes (JupyterHub 5's sharing): a server's owner grants a user or a group
//! scopes on one server (normally `access:servers!server=<owner>/<server>`), directly or through
//! a code the guest redeems.
//!
//! A share is keyed by its server then its grantee (`owner NUL server NUL u:bob`), so a
//! server's shares are one prefix; the reverse index `shares_by_grantee` (`u:bob NUL owner NUL
//! server`), written in the same transaction, makes "what is shared with bob" (asked whenever
//! bob's scopes are resolved) cost bob's shares only. Share codes are stored by the hash of
//! the code, never the code.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::{decode, encode, Result, StateError, Store};

/// Who a share is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grantee {
    User(String),
    Group(String),
}

impl Grantee {
    /// `u:<name>` or `g:<name>`: the grantee's part of the keys.
    fn key(&self) -> String {
        match self {
            Grantee::User(n) => format!("u:{n}"),
            Grantee::Group(n) => format!("g:{n}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareRecord {
    pub owner: String,
    /// The server's name ("" for the default server).
    pub server: String,
    pub grantee: Grantee,
    /// The scopes granted, each filtered to this server.
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareCodeRecord {
    /// Public id, for listing and revoking (`sc_…`).
    pub id: String,
    /// SHA-256 of the code: the code itself is shown once, when issued.
    pub hash: String,
    pub owner: String,
    pub server: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// None: never expires (JupyterHub allows it; Orrery always sets one from the request or
    /// `sharing.code_max_age`).
    pub expires_at: Option<DateTime<Utc>>,
    /// How many times it was redeemed, and when last (JupyterHub's `exchange_count`).
    #[serde(default)]
    pub exchange_count: u64,
    #[serde(default)]
    pub last_exchanged_at: Option<DateTime<Utc>>,
}

impl ShareCodeRecord {
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

fn server_prefix(owner: &str, server: &str) -> Vec<u8> {
    format!("{owner}\0{server}\0").into_bytes()
}

fn share_key(owner: &str, server: &str, grantee: &Grantee) -> Vec<u8> {
    format!("{owner}\0{server}\0{}", grantee.key()).into_bytes()
}

fn grantee_key(grantee: &Grantee, owner: &str, server: &str) -> Vec<u8> {
    format!("{}\0{owner}\0{server}", grantee.key()).into_bytes()
}

fn tx_err(e: TransactionError<StateError>) -> StateError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StateError::Db(e),
    }
}

impl Store {
    /// Write a share (new or replacing the same server's share for the same grantee) and its
    /// reverse index entry in one transaction.
    pub fn put_share(&self, share: &ShareRecord) -> Result<()> {
        let key = share_key(&share.owner, &share.server, &share.grantee);
        let rev = grantee_key(&share.grantee, &share.owner, &share.server);
        let value = encode(share);
        (&self.shares, &self.shares_by_grantee)
            .transaction(|(shares, by_grantee)| {
                shares.insert(key.as_slice(), value.as_slice())?;
                by_grantee.insert(rev.as_slice(), &[] as &[u8])?;
                Ok::<(), ConflictableTransactionError<StateError>>(())
            })
            .map_err(tx_err)?;
        self.refresh_shared(&share.owner, &share.server);
        Ok(())
    }

    /// Remove one share (and its index entry); false if there was none.
    pub fn delete_share(&self, owner: &str, server: &str, grantee: &Grantee) -> Result<bool> {
        let key = share_key(owner, server, grantee);
        let rev = grantee_key(grantee, owner, server);
        let existed = (&self.shares, &self.shares_by_grantee)
            .transaction(|(shares, by_grantee)| {
                let existed = shares.remove(key.as_slice())?.is_some();
                by_grantee.remove(rev.as_slice())?;
                Ok::<bool, ConflictableTransactionError<StateError>>(existed)
            })
            .map_err(tx_err)?;
        self.refresh_shared(owner, server);
        Ok(existed)
    }

    pub fn share(
        &self,
        owner: &str,
        server: &str,
        grantee: &Grantee,
    ) -> Result<Option<ShareRecord>> {
        self.shares
            .get(share_key(owner, server, grantee))?
            .map(|raw| decode("share", &raw))
            .transpose()
    }

    /// The shares of one server, by grantee.
    pub fn shares_of_server(&self, owner: &str, server: &str) -> Result<Vec<ShareRecord>> {
        self.shares
            .scan_prefix(server_prefix(owner, server))
            .values()
            .map(|v| decode("share", &v?))
            .collect()
    }

    /// Whether the shares tree holds a share of this server (what the in-memory set the proxy
    /// reads, [`Store::server_is_shared`], is kept from).
    pub(super) fn server_has_shares(&self, owner: &str, server: &str) -> bool {
        self.shares
            .scan_prefix(server_prefix(owner, server))
            .next()
            .is_some()
    }

    /// Every share (at open, for the in-memory shared set).
    pub(super) fn all_shares(&self) -> Result<Vec<ShareRecord>> {
        self.shares
            .iter()
            .values()
            .map(|v| decode("share", &v?))
            .collect()
    }

    /// The shares of all of `owner`'s servers.
    pub fn shares_of_owner(&self, owner: &str) -> Result<Vec<ShareRecord>> {
        self.shares
            .scan_prefix(format!("{owner}\0").into_bytes())
            .values()
            .map(|v| decode("share", &v?))
            .collect()
    }

    /// The shares granted to `grantee`, through the reverse index.
    pub fn shares_for(&self, grantee: &Grantee) -> Result<Vec<ShareRecord>> {
        let prefix = format!("{}\0", grantee.key()).into_bytes();
        let mut out = Vec::new();
        for key in self.shares_by_grantee.scan_prefix(&prefix).keys() {
            let key = key?;
            let rest = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            let Some((owner, server)) = rest.split_once('\0') else {
                continue;
            };
            if let Some(s) = self.share(owner, server, grantee)? {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Remove every share of a server (it is deleted, or its owner revokes all): the removed.
    pub fn delete_shares_of_server(&self, owner: &str, server: &str) -> Result<Vec<ShareRecord>> {
        let shares = self.shares_of_server(owner, server)?;
        for s in &shares {
            self.delete_share(&s.owner, &s.server, &s.grantee)?;
        }
        Ok(shares)
    }

    /// Remove every share granted to `grantee` (a user or group deleted): the removed.
    pub fn delete_shares_for(&self, grantee: &Grantee) -> Result<Vec<ShareRecord>> {
        let shares = self.shares_for(grantee)?;
        for s in &shares {
            self.delete_share(&s.owner, &s.server, &s.grantee)?;
        }
        Ok(shares)
    }

    /// Everything shared by or with a user who is deleted: their servers' shares and codes,
    /// and the shares granted to them.
    pub(super) fn forget_shares_of_user(&self, name: &str) -> Result<()> {
        for s in self.shares_of_owner(name)? {
            self.delete_share(&s.owner, &s.server, &s.grantee)?;
        }
        self.delete_shares_for(&Grantee::User(name.to_string()))?;
        for c in self.share_codes_of(name, None)? {
            self.delete_share_code(&c.hash)?;
        }
        Ok(())
    }

    pub fn put_share_code(&self, code: &ShareCodeRecord) -> Result<()> {
        self.share_codes
            .insert(code.hash.as_bytes(), encode(code))?;
        Ok(())
    }

    pub fn share_code_by_hash(&self, hash: &str) -> Result<Option<ShareCodeRecord>> {
        self.share_codes
            .get(hash.as_bytes())?
            .map(|raw| decode("share code", &raw))
            .transpose()
    }

    /// `owner`'s codes (of one server when `server` is Some), expired ones dropped as met.
    pub fn share_codes_of(
        &self,
        owner: &str,
        server: Option<&str>,
    ) -> Result<Vec<ShareCodeRecord>> {
        let now = Utc::now();
        let mut out = Vec::new();
        for v in self.share_codes.iter().values() {
            let c: ShareCodeRecord = decode("share code", &v?)?;
            if c.is_expired(now) {
                self.share_codes.remove(c.hash.as_bytes())?;
                continue;
            }
            if c.owner == owner && server.is_none_or(|s| s == c.server) {
                out.push(c);
            }
        }
        out.sort_by_key(|c| c.created_at);
        Ok(out)
    }

    pub fn delete_share_code(&self, hash: &str) -> Result<bool> {
        Ok(self.share_codes.remove(hash.as_bytes())?.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(owner: &str, server: &str, g: Grantee) -> ShareRecord {
        ShareRecord {
            owner: owner.into(),
            server: server.into(),
            grantee: g,
            scopes: vec![format!("access:servers!server={owner}/{server}")],
            created_at: Utc::now(),
        }
    }

    #[test]
    fn shares_are_found_by_server_and_by_grantee_and_removed_from_both() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let bob = Grantee::User("bob".into());
        let ta = Grantee::Group("ta".into());
        s.put_share(&share("alice", "", bob.clone())).unwrap();
        s.put_share(&share("alice", "lab", bob.clone())).unwrap();
        s.put_share(&share("alice", "", ta.clone())).unwrap();
        // "al" is a prefix of "alice" as text, not as an owner.
        s.put_share(&share("al", "", bob.clone())).unwrap();
        assert_eq!(s.shares_of_server("alice", "").unwrap().len(), 2);
        assert_eq!(s.shares_of_owner("alice").unwrap().len(), 3);
        assert_eq!(s.shares_for(&bob).unwrap().len(), 3);
        assert!(s.server_is_shared("alice", "lab"));
        assert!(s.delete_share("alice", "lab", &bob).unwrap());
        assert!(!s.server_is_shared("alice", "lab"));
        assert_eq!(s.shares_for(&bob).unwrap().len(), 2);
        let gone = s.delete_shares_of_server("alice", "").unwrap();
        assert_eq!(gone.len(), 2);
        assert_eq!(s.shares_for(&ta).unwrap(), vec![]);
        assert_eq!(s.shares_for(&bob).unwrap()[0].owner, "al");
    }

    #[test]
    fn expired_codes_are_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let now = Utc::now();
        for (hash, expires) in [("h1", now + chrono::Duration::hours(1)), ("h2", now)] {
            s.put_share_code(&ShareCodeRecord {
                id: format!("sc_{hash}"),
                hash: hash.into(),
                owner: "alice".into(),
                server: String::new(),
                scopes: vec![],
                created_at: now,
                expires_at: Some(expires),
                exchange_count: 0,
                last_exchanged_at: None,
            })
            .unwrap();
        }
        let codes = s.share_codes_of("alice", Some("")).unwrap();
        assert_eq!(codes.len(), 1);
        assert_eq!(codes[0].id, "sc_h1");
        assert!(s.share_code_by_hash("h2").unwrap().is_none());
    }
}
