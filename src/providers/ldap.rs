//! The LDAP authenticator (`auth.type = "ldap"`): a login is checked by binding to the
//! directory as the user (ldap3; nothing of the protocol is written here). The user's DN comes
//! from `bind_dn_template` (direct bind) or from a search (as `bind_dn`, or anonymously); the
//! user's groups from a search under `group_search_base`. The connection is encrypted with
//! `ldaps://` or StartTLS, verified against `ca_file` (or the system's CAs).
//!
//! Names typed into the login form are escaped before they reach a DN or a filter
//! (`dn_escape`, `ldap_escape`), and an empty password is refused before any bind: LDAP treats
//! a bind with an empty password as anonymous, and succeeds.

use std::sync::Arc;

use ldap3::{dn_escape, ldap_escape, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

use super::{ExternalIdentity, ProviderError};
use crate::config::providers::Ldap;

/// The result code of a bind with a wrong password (RFC 4511 `invalidCredentials`).
const INVALID_CREDENTIALS: u32 = 49;

/// The longest name or password sent to the directory.
const MAX_INPUT: usize = 256;

fn provider(what: &str, e: impl std::fmt::Display) -> ProviderError {
    ProviderError::Unavailable(format!("the LDAP directory: {what}: {e}"))
}

/// The connection settings: timeout, StartTLS, and the CA file's certificates as the only
/// roots when one is given.
fn settings(cfg: &Ldap) -> Result<LdapConnSettings, ProviderError> {
    let mut s = LdapConnSettings::new()
        .set_conn_timeout(cfg.timeout.as_std())
        .set_starttls(cfg.starttls);
    if !cfg.ca_file.is_empty() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let pem = std::fs::read(&cfg.ca_file)
            .map_err(|e| provider(&format!("cannot read auth.ldap.ca_file {}", cfg.ca_file), e))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| provider("auth.ldap.ca_file is not PEM", e))?;
            roots
                .add(cert)
                .map_err(|e| provider("a certificate in auth.ldap.ca_file", e))?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| provider("TLS", e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        s = s.set_config(Arc::new(config));
    }
    Ok(s)
}

/// Check `login` / `password` against the directory: who they are and their groups.
pub async fn authenticate(
    cfg: &Ldap,
    login: &str,
    password: &str,
) -> Result<ExternalIdentity, ProviderError> {
    let login = login.trim();
    if login.is_empty()
        || password.is_empty()
        || login.len() > MAX_INPUT
        || password.len() > MAX_INPUT
    {
        return Err(ProviderError::Rejected);
    }
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings(cfg)?, &cfg.url)
        .await
        .map_err(|e| provider(&format!("cannot connect to {}", cfg.url), e))?;
    ldap3::drive!(conn);

    let service_bind = |ldap: &mut ldap3::Ldap| {
        let (dn, pw) = (cfg.bind_dn.clone(), cfg.bind_password.clone());
        let mut ldap = ldap.clone();
        async move {
            if dn.is_empty() {
                return Ok(());
            }
            ldap.simple_bind(&dn, &pw)
                .await
                .and_then(|r| r.success())
                .map(drop)
                .map_err(|e| provider("the service account (auth.ldap.bind_dn) cannot bind", e))
        }
    };

    let dn = if !cfg.bind_dn_template.is_empty() {
        cfg.bind_dn_template
            .replace("{username}", &dn_escape(login))
    } else {
        service_bind(&mut ldap).await?;
        let filter = cfg
            .user_search_filter
            .replace("{username}", &ldap_escape(login));
        let (entries, _) = ldap
            .search(&cfg.user_search_base, Scope::Subtree, &filter, vec!["1.1"])
            .await
            .and_then(|r| r.success())
            .map_err(|e| provider("the user search failed", e))?;
        let n = entries.len();
        match entries.into_iter().next() {
            None => return Err(ProviderError::Rejected),
            Some(entry) if n == 1 => SearchEntry::construct(entry).dn,
            Some(_) => {
                return Err(provider(
                    "the user search",
                    format!("{n} entries match; make auth.ldap.user_search_filter match one"),
                ))
            }
        }
    };

    match ldap.simple_bind(&dn, password).await {
        Ok(r) if r.rc == 0 => {}
        Ok(r) if r.rc == INVALID_CREDENTIALS => return Err(ProviderError::Rejected),
        Ok(r) => return Err(provider("the bind failed", r)),
        Err(e) => return Err(provider("the bind failed", e)),
    }

    let mut groups = Vec::new();
    if !cfg.group_search_base.is_empty() {
        service_bind(&mut ldap).await?;
        let filter = cfg
            .group_search_filter
            .replace("{userdn}", &ldap_escape(&dn))
            .replace("{username}", &ldap_escape(login));
        let (entries, _) = ldap
            .search(
                &cfg.group_search_base,
                Scope::Subtree,
                &filter,
                vec![cfg.group_name_attribute.as_str()],
            )
            .await
            .and_then(|r| r.success())
            .map_err(|e| provider("the group search failed", e))?;
        for entry in entries {
            let entry = SearchEntry::construct(entry);
            if let Some(name) = entry
                .attrs
                .get(&cfg.group_name_attribute)
                .and_then(|v| v.first())
            {
                groups.push(name.clone());
            }
        }
        groups.sort();
        groups.dedup();
    }
    let _ = ldap.unbind().await;
    Ok(ExternalIdentity {
        id: format!("ldap:{}", dn.to_lowercase()),
        name: login.to_string(),
        groups,
        refresh_token: None,
    })
}

/// `orrery doctor`'s check: connect, (StartTLS), and bind as the service account (or
/// anonymously): what is wrong, with the fix.
pub async fn check(cfg: &Ldap) -> Result<String, String> {
    let (conn, mut ldap) =
        LdapConnAsync::with_settings(settings(cfg).map_err(|e| e.to_string())?, &cfg.url)
            .await
            .map_err(|e| {
                format!(
                    "cannot connect to {} ({e}); check auth.ldap.url, auth.ldap.starttls and \
             auth.ldap.ca_file",
                    cfg.url
                )
            })?;
    ldap3::drive!(conn);
    if cfg.bind_dn.is_empty() {
        let _ = ldap.unbind().await;
        return Ok(format!("{} answers", cfg.url));
    }
    let bound = ldap
        .simple_bind(&cfg.bind_dn, &cfg.bind_password)
        .await
        .and_then(|r| r.success());
    let _ = ldap.unbind().await;
    match bound {
        Ok(_) => Ok(format!("{} answers; {} binds", cfg.url, cfg.bind_dn)),
        Err(e) => Err(format!(
            "{} cannot bind ({e}); check auth.ldap.bind_dn and its password \
             (auth.ldap.bind_password_file)",
            cfg.bind_dn
        )),
    }
}
