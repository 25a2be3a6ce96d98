//! Sharing a server with other users and groups (JupyterHub 5's shares): the rules, apart from
//! the HTTP API ([`crate::apihandlers::shares`]) and the store ([`crate::state::ShareRecord`]).
//!
//! A share grants scopes on one server, `access:servers!server=<owner>/<server>` unless the
//! owner asks for less; the guest's scopes include every share granted to them or to one of
//! their groups ([`crate::hub::Hub::user_scopes`]), so the server's own OAuth check lets them
//! in. Sharing is refused on a single origin unless `sharing.allow_single_origin` says the
//! operator accepts the risk: there, JavaScript in the shared server runs with the guest's hub
//! login.
//!
//! Revocation takes effect at the hub at once (a guest's tokens carry only what the guest holds
//! now), and at the proxy at once too: for a shared server the proxy learns who each visitor is
//! ([`crate::visits`]) and refuses one who has lost access, and closes their open WebSockets.
//! The single-user server's own cache of the hub's answers (five minutes in
//! `jupyterhub-singleuser`) therefore never lets a revoked guest back in through Orrery's proxy.

use crate::config::Config;
use crate::scopes::{ScopeSet, Target};
use crate::state::{Grantee, ShareRecord, Store};

/// Why a share request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SharingError {
    #[error(
        "sharing is off on a single origin: JavaScript in a shared server would run with the \
         guest's hub login. Set http.subdomain_host (each server on its own host), or accept the \
         risk with sharing.allow_single_origin = true"
    )]
    SingleOrigin,
    #[error(
        "scope {0:?} cannot be shared: a share grants access:servers or read:servers filtered to \
         the shared server (!server=OWNER/SERVER)"
    )]
    BadScope(String),
    #[error("give exactly one of \"user\" and \"group\"")]
    Grantee,
    #[error("{0} is the server's owner: owners need no share")]
    Owner(String),
}

/// Whether this configuration lets anyone share.
pub fn allowed(cfg: &Config) -> Result<(), SharingError> {
    if cfg.http.subdomain_host.trim().is_empty() && !cfg.sharing.allow_single_origin {
        return Err(SharingError::SingleOrigin);
    }
    Ok(())
}

/// What a share grants unless the owner asks for less.
pub fn default_scopes(owner: &str, server: &str) -> Vec<String> {
    vec![format!("access:servers!server={owner}/{server}")]
}

/// The scopes a share may carry: `access:servers` or `read:servers`, filtered to this server
/// (a bare name is filtered to it here). Empty or absent: [`default_scopes`].
pub fn checked_scopes(
    owner: &str,
    server: &str,
    requested: Option<&[String]>,
) -> Result<Vec<String>, SharingError> {
    let Some(requested) = requested.filter(|r| !r.is_empty()) else {
        return Ok(default_scopes(owner, server));
    };
    let filter = format!("server={owner}/{server}");
    let mut out = Vec::new();
    for s in requested {
        let (name, f) = s.split_once('!').unwrap_or((s.as_str(), filter.as_str()));
        if !matches!(name, "access:servers" | "read:servers") || f != filter {
            return Err(SharingError::BadScope(s.clone()));
        }
        out.push(format!("{name}!{filter}"));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The grantee of a request body's `user` / `group` (exactly one).
pub fn grantee(user: Option<&str>, group: Option<&str>) -> Result<Grantee, SharingError> {
    match (user, group) {
        (Some(u), None) => Ok(Grantee::User(u.to_string())),
        (None, Some(g)) => Ok(Grantee::Group(g.to_string())),
        _ => Err(SharingError::Grantee),
    }
}

/// The share to store when `owner` grants `scopes` on `server` to `grantee`: `existing`
/// (their share of it, if any) widened, or a new one.
pub fn widened(
    existing: Option<ShareRecord>,
    owner: &str,
    server: &str,
    grantee: Grantee,
    scopes: &[String],
) -> ShareRecord {
    match existing {
        Some(mut s) => {
            s.scopes.extend(scopes.iter().cloned());
            s.scopes.sort();
            s.scopes.dedup();
            s
        }
        None => ShareRecord {
            owner: owner.to_string(),
            server: server.to_string(),
            grantee,
            scopes: scopes.to_vec(),
            created_at: chrono::Utc::now(),
        },
    }
}

/// A new share code for `owner`'s server `server`, valid for `secs`: the code (shown once)
/// and the record to store (which keeps only its hash).
pub fn new_code(
    owner: &str,
    server: &str,
    scopes: Vec<String>,
    secs: i64,
) -> (String, crate::state::ShareCodeRecord) {
    let code = crate::secrets::new_token();
    let now = chrono::Utc::now();
    let rec = crate::state::ShareCodeRecord {
        id: format!("sc_{}", &crate::secrets::new_token()[..16]),
        hash: crate::secrets::hash_token(&code),
        owner: owner.to_string(),
        server: server.to_string(),
        scopes,
        created_at: now,
        expires_at: Some(now + chrono::Duration::seconds(secs)),
        exchange_count: 0,
        last_exchanged_at: None,
    };
    (code, rec)
}

/// Every share that reaches `user`: granted to them or to one of `groups`. A store error
/// yields none (fails closed).
pub fn grants_for(store: &Store, user: &str, groups: &[String]) -> Vec<ShareRecord> {
    let mut out = store
        .shares_for(&Grantee::User(user.to_string()))
        .unwrap_or_default();
    for g in groups {
        out.extend(
            store
                .shares_for(&Grantee::Group(g.clone()))
                .unwrap_or_default(),
        );
    }
    out
}

/// The scopes those shares grant.
pub fn scopes_of(grants: &[ShareRecord]) -> ScopeSet {
    let mut set = ScopeSet::default();
    for g in grants {
        set.merge(&ScopeSet::granted(&g.scopes, None));
    }
    set
}

/// Whether `scopes` (a visitor's) open `owner`'s server `server`.
pub fn may_access(scopes: &ScopeSet, owner: &str, owner_groups: &[String], server: &str) -> bool {
    let full = format!("{owner}/{server}");
    scopes.allows(
        "access:servers",
        &Target {
            user: Some(owner),
            server: Some(&full),
            groups: owner_groups,
            service: None,
        },
    )
}

/// Redeem `code` for `user`: the share it grants (new or widened), or why not.
pub fn redeem(store: &Store, cfg: &Config, code: &str, user: &str) -> Result<ShareRecord, String> {
    let fail = |e: crate::state::StateError| e.to_string();
    let now = chrono::Utc::now();
    let hash = crate::secrets::hash_token(code);
    let mut rec =
        match store.share_code_by_hash(&hash).map_err(fail)? {
            Some(c) if !c.is_expired(now) => c,
            _ => return Err(
                "This share code is not valid: it has expired or was revoked. Ask for a new one."
                    .into(),
            ),
        };
    if rec.owner == user {
        return Err("This is your own server: you need no share to open it.".into());
    }
    allowed(cfg).map_err(|e| e.to_string())?;
    let grantee = Grantee::User(user.to_string());
    let existing = store
        .share(&rec.owner, &rec.server, &grantee)
        .map_err(fail)?;
    let share = widened(existing, &rec.owner, &rec.server, grantee, &rec.scopes);
    store.put_share(&share).map_err(fail)?;
    rec.exchange_count += 1;
    rec.last_exchanged_at = Some(now);
    store.put_share_code(&rec).map_err(fail)?;
    tracing::info!(owner = %rec.owner, server = %rec.server, guest = %user, id = %rec.id, "share code redeemed");
    Ok(share)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_carry_only_this_servers_access_scopes() {
        assert_eq!(
            checked_scopes("alice", "", None).unwrap(),
            vec!["access:servers!server=alice/"]
        );
        assert_eq!(
            checked_scopes("alice", "lab", Some(&["read:servers".into()])).unwrap(),
            vec!["read:servers!server=alice/lab"]
        );
        for bad in [
            "admin:users",
            "access:servers!server=bob/",
            "access:servers!user=alice",
            "tokens!server=alice/",
        ] {
            assert_eq!(
                checked_scopes("alice", "", Some(&[bad.to_string()])),
                Err(SharingError::BadScope(bad.into()))
            );
        }
    }

    #[test]
    fn single_origin_refuses_unless_allowed() {
        let mut cfg = Config::default();
        assert_eq!(allowed(&cfg), Err(SharingError::SingleOrigin));
        assert!(SharingError::SingleOrigin
            .to_string()
            .contains("sharing.allow_single_origin"));
        cfg.sharing.allow_single_origin = true;
        assert_eq!(allowed(&cfg), Ok(()));
        cfg.sharing.allow_single_origin = false;
        cfg.http.subdomain_host = "hub.example.org".into();
        assert_eq!(allowed(&cfg), Ok(()));
    }

    #[test]
    fn a_share_opens_that_server_only() {
        let grants = vec![ShareRecord {
            owner: "alice".into(),
            server: "lab".into(),
            grantee: Grantee::User("bob".into()),
            scopes: default_scopes("alice", "lab"),
            created_at: chrono::Utc::now(),
        }];
        let s = scopes_of(&grants);
        assert!(may_access(&s, "alice", &[], "lab"));
        assert!(!may_access(&s, "alice", &[], ""));
        assert!(!may_access(&s, "carol", &[], "lab"));
        assert_eq!(grantee(Some("a"), Some("b")), Err(SharingError::Grantee));
    }
}
