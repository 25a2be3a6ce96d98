//! Certificates from an ACME server (Let's Encrypt by default) with instant-acme: Orrery
//! creates its account, answers the HTTP-01 challenges on its own HTTP port
//! ([`Challenges`], served by [`super::redirect`]), keeps the account and certificate in
//! `<state>/acme/` (mode 0600), and renews when `https.letsencrypt.renew_fraction` (a third)
//! of the lifetime is left. A failure keeps the hub serving (with the previous certificate if
//! there is one), says why and how to fix it (log, admin page, `orrery doctor`), and is
//! retried with backoff.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, LetsEncrypt,
    NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use tokio_util::sync::CancellationToken;

use super::{certified_key, CertInfo, Certs};
use crate::config::{LetsEncrypt as LeConfig, SharedConfig};

/// HTTP-01 tokens being validated → their key authorizations.
#[derive(Debug, Default)]
pub struct Challenges(RwLock<HashMap<String, String>>);

impl Challenges {
    pub fn answer(&self, token: &str) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }

    fn set(&self, token: String, key_authorization: String) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token, key_authorization);
    }

    fn clear(&self) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// The first retry after a failure; doubled each time, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Where the account and certificate live.
fn dir(state: &Path) -> PathBuf {
    state.join("acme")
}

/// The directory URL `le` points at.
fn directory_url(le: &LeConfig) -> String {
    if !le.directory_url.is_empty() {
        le.directory_url.clone()
    } else if le.staging {
        LetsEncrypt::Staging.url().to_string()
    } else {
        LetsEncrypt::Production.url().to_string()
    }
}

/// A stored certificate for exactly `domains`, if any: (chain PEM, key PEM).
fn stored(state: &Path, domains: &[String]) -> Option<(Vec<u8>, Vec<u8>)> {
    let d = dir(state);
    let meta: Vec<String> =
        serde_json::from_slice(&std::fs::read(d.join("domains.json")).ok()?).ok()?;
    if meta != domains {
        return None;
    }
    Some((
        std::fs::read(d.join("certificate.pem")).ok()?,
        std::fs::read(d.join("key.pem")).ok()?,
    ))
}

fn save(state: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    let d = dir(state);
    std::fs::create_dir_all(&d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    crate::files::write_atomically(&d.join(name), bytes, 0o600)
        .map_err(|e| format!("cannot write {}: {e}", d.join(name).display()))
}

/// Where the stored certificate and key are (for `orrery doctor`).
pub fn stored_paths(state: &Path) -> (PathBuf, PathBuf) {
    (
        dir(state).join("certificate.pem"),
        dir(state).join("key.pem"),
    )
}

/// The last failure the daemon recorded, if the last attempt failed.
pub fn last_error(state: &Path) -> Option<String> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir(state).join("last-error.json")).ok()?).ok()?;
    Some(format!(
        "{} ({})",
        v["error"].as_str().unwrap_or_default(),
        v["at"].as_str().unwrap_or_default()
    ))
}

/// Record (or clear, with `None`) the last failure, for `orrery doctor`.
fn record_error(state: &Path, why: Option<&str>) {
    let path = dir(state).join("last-error.json");
    match why {
        Some(why) => {
            let v = serde_json::json!({"error": why, "at": Utc::now().to_rfc3339()});
            let _ = save(state, "last-error.json", v.to_string().as_bytes());
        }
        None => {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// When a certificate with `info` is renewed.
fn renew_at(info: &CertInfo, fraction: f64) -> DateTime<Utc> {
    let life = (info.not_after - info.not_before).num_seconds().max(0) as f64;
    info.not_after - chrono::Duration::seconds((life * fraction) as i64)
}

/// Keep a certificate for `https.letsencrypt.domains` served in `certs`, until `stop`.
pub async fn run(
    certs: Arc<Certs>,
    challenges: Arc<Challenges>,
    config: SharedConfig,
    state: PathBuf,
    stop: CancellationToken,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let le = config.get().https.letsencrypt.clone();
        // What is on disk first: a restart does not ask the CA again.
        let mut next = Utc::now();
        if let Some((chain, key)) = stored(&state, &le.domains) {
            match certified_key(&chain, &key) {
                Ok((ck, info)) => {
                    next = renew_at(&info, le.renew_fraction);
                    if !certs.ready() || certs.status().certificate.as_ref() != Some(&info) {
                        certs.install(ck, info);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the stored ACME certificate is unusable; getting a new one")
                }
            }
        }
        certs.set_renew_at(Some(next));
        if next <= Utc::now() {
            match obtain(&le, &challenges, &state).await {
                Ok((chain, key)) => match certified_key(chain.as_bytes(), key.as_bytes()) {
                    Ok((ck, info)) => {
                        next = renew_at(&info, le.renew_fraction);
                        certs.install(ck, info);
                        certs.set_renew_at(Some(next));
                        record_error(&state, None);
                        backoff = FIRST_BACKOFF;
                    }
                    Err(e) => {
                        certs.fail(format!("the ACME server sent an unusable certificate: {e}"));
                        next = Utc::now() + chrono::Duration::from_std(backoff).unwrap_or_default();
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                },
                Err(why) => {
                    record_error(&state, Some(&why));
                    certs.fail(why);
                    next = Utc::now() + chrono::Duration::from_std(backoff).unwrap_or_default();
                    certs.set_renew_at(Some(next));
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            challenges.clear();
        }
        let wait = (next - Utc::now())
            .to_std()
            .unwrap_or_default()
            .max(Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// The account for the configured directory: stored, or created now.
async fn account(le: &LeConfig, state: &Path) -> Result<Account, String> {
    let url = directory_url(le);
    let builder = match &le.directory_ca {
        Some(ca) => Account::builder_with_root(ca),
        None => Account::builder(),
    }
    .map_err(|e| format!("cannot set up the ACME client: {e}"))?;
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Stored {
        directory: String,
        credentials: AccountCredentials,
    }
    let path = dir(state).join("account.json");
    if let Some(s) = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Stored>(&b).ok())
        .filter(|s| s.directory == url)
    {
        return builder
            .from_credentials(s.credentials)
            .await
            .map_err(|e| unreachable_server(&url, &e));
    }
    let contact = format!("mailto:{}", le.email);
    let contacts: Vec<&str> = if le.email.is_empty() {
        Vec::new()
    } else {
        vec![contact.as_str()]
    };
    let (account, credentials) = builder
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            url.clone(),
            None,
        )
        .await
        .map_err(|e| unreachable_server(&url, &e))?;
    let stored = Stored {
        directory: url,
        credentials,
    };
    save(
        state,
        "account.json",
        &serde_json::to_vec_pretty(&stored).map_err(|e| e.to_string())?,
    )?;
    tracing::info!("ACME account created");
    Ok(account)
}

fn unreachable_server(url: &str, e: &instant_acme::Error) -> String {
    match e {
        instant_acme::Error::Api(p) => problem_text(p, &[]),
        _ => format!(
            "cannot reach the ACME server at {url} ({e}). Check this machine's outbound HTTPS \
             and https.letsencrypt.directory_url"
        ),
    }
}

/// A problem document as a sentence with the fix.
fn problem_text(p: &instant_acme::Problem, domains: &[String]) -> String {
    let kind = p.r#type.as_deref().unwrap_or("");
    let detail = p.detail.as_deref().unwrap_or("no detail");
    let names = domains.join(", ");
    let fix = if kind.ends_with(":rateLimited") {
        "the ACME server's rate limit was hit: Orrery retries later; use \
         https.letsencrypt.staging = true while testing"
            .to_string()
    } else if kind.ends_with(":dns") {
        format!("check that the DNS names {names} exist and point at this machine")
    } else if kind.ends_with(":connection") || kind.ends_with(":unauthorized") {
        format!(
            "check that the DNS names {names} point at this machine and that its port 80 \
             (http.port) is reachable from the internet: the ACME server fetches \
             http://<name>/.well-known/acme-challenge/… from Orrery"
        )
    } else {
        "see the ACME server's message".to_string()
    };
    format!("{detail} ({kind}); {fix}")
}

/// Run one order for `le.domains`: (certificate chain PEM, private key PEM), or why not.
async fn obtain(
    le: &LeConfig,
    challenges: &Challenges,
    state: &Path,
) -> Result<(String, String), String> {
    let account = account(le, state).await?;
    let ids: Vec<Identifier> = le
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .collect();
    let acme = |e: instant_acme::Error| match e {
        instant_acme::Error::Api(p) => problem_text(&p, &le.domains),
        other => format!("the ACME exchange failed: {other}"),
    };
    let mut order = account
        .new_order(&NewOrder::new(&ids))
        .await
        .map_err(acme)?;
    {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(acme)?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(format!("an authorization is {other:?}; try again later")),
            }
            let mut challenge = authz.challenge(ChallengeType::Http01).ok_or_else(|| {
                "the ACME server offers no HTTP-01 challenge for this name".to_string()
            })?;
            challenges.set(
                challenge.token.clone(),
                challenge.key_authorization().as_str().to_string(),
            );
            challenge.set_ready().await.map_err(acme)?;
        }
    }
    let retry = RetryPolicy::default().timeout(Duration::from_secs(90));
    let not_validated = |why: String| {
        format!(
            "the ACME server did not validate {}: {why}",
            le.domains.join(", ")
        )
    };
    let status = order
        .poll_ready(&retry)
        .await
        .map_err(|e| not_validated(acme(e)))?;
    if status != OrderStatus::Ready {
        // The challenge's own error says what the server saw.
        let mut why = format!("the order is {status:?}");
        let mut authorizations = order.authorizations();
        while let Some(Ok(authz)) = authorizations.next().await {
            if let Some(p) = authz.challenges.iter().find_map(|c| c.error.clone()) {
                why = problem_text(&p, &le.domains);
                break;
            }
        }
        return Err(format!(
            "the ACME server did not validate {}: {why}",
            le.domains.join(", ")
        ));
    }
    let key = order.finalize().await.map_err(acme)?;
    let chain = order.poll_certificate(&retry).await.map_err(acme)?;
    save(state, "key.pem", key.as_bytes())?;
    save(state, "certificate.pem", chain.as_bytes())?;
    save(
        state,
        "domains.json",
        &serde_json::to_vec(&le.domains).map_err(|e| e.to_string())?,
    )?;
    tracing::info!(domains = ?le.domains, "ACME certificate obtained");
    Ok((chain, key))
}
