//! Authenticators: turning a name and a password into a logged-in user.
//!
//! `auth.type` picks one ([`crate::config::AuthType`]):
//! * [`firstuse`]: TLJH's default; the first password a new name logs in with becomes its password.
//! * [`native`]: only users that exist with a password (admin-created) may log in.
//! * [`dummy`]: any password (or the one configured); refuses non-loopback addresses at startup.
//! * `ldap` ([`crate::providers::ldap`]): the directory's password, checked by a bind; who may
//!   log in, admins and groups by the provider rules of [`identity`] (shared by every provider).
//!
//! [`signup`] says who may create an account (closed by default) and tells upgraded installs.
//!
//! Every attempt goes through [`login`], which normalises the name, applies the allowed and
//! blocked lists, and throttles failures per user and per client IP ([`crate::ratelimit`]).

pub mod dummy;
pub mod firstuse;
pub mod identity;
pub mod native;
pub mod signup;

use std::net::IpAddr;
use std::time::Duration;

use thiserror::Error;

use crate::config::AuthType;
use crate::hub::Hub;
use crate::secrets;
use crate::state::{StateError, UserRecord};
use crate::username::{self, UsernameError};

#[derive(Debug, Error)]
pub enum LoginError {
    #[error("{0}")]
    InvalidName(#[from] UsernameError),
    #[error("too many failed logins; try again in {} seconds", .0.as_secs().max(1))]
    RateLimited(Duration),
    #[error("invalid user name or password")]
    BadCredentials,
    #[error("passwords must be at least {0} characters long")]
    PasswordTooShort(u32),
    /// The provider vouched for them, but the hub's rules keep them out (said plainly).
    #[error("{0}")]
    NotAllowed(String),
    /// Their Orrery name belongs to another account of the provider.
    #[error("{0}")]
    IdentityConflict(String),
    /// The provider could not be asked (unreachable, misconfigured): the detail is logged,
    /// the person sees that signing in is not possible right now.
    #[error("signing in is not possible right now (the hub cannot reach its identity provider); try again in a moment, or tell the hub's admins")]
    Provider(String),
    /// The provider's answer failed Orrery's checks (a forged or replayed login, a wrong
    /// state): the cause is logged, the person starts again.
    #[error("this login could not be verified; start again from the login page")]
    Unverified(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<crate::providers::ProviderError> for LoginError {
    fn from(e: crate::providers::ProviderError) -> Self {
        use crate::providers::ProviderError as P;
        match e {
            P::Rejected => LoginError::BadCredentials,
            P::Unavailable(why) => LoginError::Provider(why),
            P::Invalid(why) => LoginError::Unverified(why),
        }
    }
}

impl From<StateError> for LoginError {
    fn from(e: StateError) -> Self {
        LoginError::Internal(e.to_string())
    }
}

/// Is `name` allowed to log in at all under the users.allowed / users.blocked lists?
pub fn name_permitted(hub: &Hub, name: &str) -> bool {
    let cfg = hub.config();
    if cfg.users.blocked.iter().any(|b| b == name) {
        return false;
    }
    cfg.users.allowed.is_empty()
        || cfg.users.allowed.iter().any(|a| a == name)
        || cfg.users.admin.iter().any(|a| a == name)
}

/// Check a login attempt; on success the user exists in the store and is returned.
pub async fn login(
    hub: &Hub,
    raw_name: &str,
    password: &str,
    ip: Option<IpAddr>,
) -> Result<UserRecord, LoginError> {
    let cfg = hub.config();
    let (attempts, window) = (
        cfg.auth.rate_limit.attempts,
        cfg.auth.rate_limit.window.as_std(),
    );
    // Throttle on the raw name as well, so invalid names can't be used to probe freely.
    let name = username::normalize(raw_name);
    let user_key = format!("user:{}", name.as_deref().unwrap_or(raw_name));
    let ip_key = ip.map(|ip| format!("ip:{ip}"));
    hub.limiter
        .check(&user_key, attempts, window)
        .map_err(LoginError::RateLimited)?;
    if let Some(k) = &ip_key {
        // An address gets more room than a single name: a classroom shares one NAT address.
        hub.limiter
            .check(k, attempts.saturating_mul(4), window)
            .map_err(LoginError::RateLimited)?;
    }
    let result = if cfg.auth.kind.is_external() {
        external(hub, &cfg, raw_name, password).await
    } else {
        match name {
            Err(e) => Err(LoginError::InvalidName(e)),
            Ok(name) if !name_permitted(hub, &name) => Err(LoginError::BadCredentials),
            Ok(name) => match cfg.auth.kind {
                AuthType::Firstuse => firstuse::authenticate(hub, &name, password).await,
                AuthType::Native => native::authenticate(hub, &name, password).await,
                AuthType::Dummy => dummy::authenticate(hub, &name, password).await,
                AuthType::Ldap | AuthType::Oidc | AuthType::Github => {
                    Err(LoginError::Internal("not a password authenticator".into()))
                }
            },
        }
    };
    match &result {
        Ok(_) => {
            hub.limiter.reset(&user_key);
            hub.metrics.login(true);
        }
        Err(LoginError::Provider(detail)) => {
            tracing::warn!(error = %detail, "login: the identity provider could not be asked");
        }
        Err(LoginError::Unverified(detail)) => {
            tracing::warn!(error = %detail, "login refused: the provider's answer failed verification");
            if let Some(k) = &ip_key {
                hub.limiter.record_failure(k);
            }
        }
        Err(LoginError::PasswordTooShort(_)) | Err(LoginError::Internal(_)) => {}
        Err(_) => {
            hub.limiter.record_failure(&user_key);
            if let Some(k) = &ip_key {
                hub.limiter.record_failure(k);
            }
            hub.metrics.login(false);
        }
    }
    result
}

/// A login through the identity provider (the name as typed goes to the provider, which may
/// know people by e-mail address), then the provider rules ([`identity::admit`]). With
/// `auth.local_admins`, an admin the provider refuses or cannot check may still log in with
/// the password the hub keeps for them (break-glass); nobody else may.
async fn external(
    hub: &Hub,
    cfg: &crate::config::Config,
    raw_name: &str,
    password: &str,
) -> Result<UserRecord, LoginError> {
    let vouched = match cfg.auth.kind {
        AuthType::Ldap => {
            let l = &cfg.auth.ldap;
            match tokio::time::timeout(
                l.timeout.as_std(),
                crate::providers::ldap::authenticate(l, raw_name, password),
            )
            .await
            {
                Ok(r) => r.map_err(LoginError::from).and_then(|who| {
                    identity::Policy::of(&cfg.auth)
                        .map(|policy| (who, policy))
                        .ok_or_else(|| LoginError::Internal("not an identity provider".into()))
                }),
                Err(_) => Err(LoginError::Provider(format!(
                    "the LDAP directory {} did not answer within {}",
                    l.url, l.timeout
                ))),
            }
        }
        // People log in at the provider (`/hub/oauth_login`); the form is for local admins.
        AuthType::Oidc | AuthType::Github => Err(LoginError::BadCredentials),
        _ => Err(LoginError::Internal("not an identity provider".into())),
    };
    let admitted = match vouched {
        Ok((who, policy)) => identity::admit(hub, &who, policy).await,
        Err(e) => Err(e),
    };
    match admitted {
        Err(e @ (LoginError::BadCredentials | LoginError::Provider(_)))
            if cfg.auth.local_admins =>
        {
            match local_admin(hub, raw_name, password).await {
                Some(user) => {
                    tracing::warn!(user = %user.name, "admin logged in with the hub's own password (auth.local_admins)");
                    Ok(user)
                }
                None => Err(e),
            }
        }
        other => other,
    }
}

/// The admin `raw_name` names, if the password is the one the hub keeps for them.
async fn local_admin(hub: &Hub, raw_name: &str, password: &str) -> Option<UserRecord> {
    let name = username::normalize(raw_name).ok()?;
    let user = hub.store.user(&name).ok()??;
    let hash = user.password_hash.clone()?;
    (hub.is_admin(&user) && verify_password(password.to_string(), hash).await).then_some(user)
}

/// Hash off the async runtime: argon2 takes tens of milliseconds by design.
pub async fn hash_password(password: String) -> Result<String, LoginError> {
    tokio::task::spawn_blocking(move || secrets::hash_password(&password))
        .await
        .map_err(|e| LoginError::Internal(e.to_string()))?
        .map_err(|e| LoginError::Internal(e.to_string()))
}

pub async fn verify_password(password: String, stored: String) -> bool {
    tokio::task::spawn_blocking(move || secrets::verify_password(&password, &stored))
        .await
        .unwrap_or(false)
}

/// Set a new password for `name` (change-password page, admin, `orrery users set-password`).
pub async fn set_password(hub: &Hub, name: &str, new_password: &str) -> Result<(), LoginError> {
    let min = hub.config().auth.firstuse.min_password_length;
    if (new_password.chars().count() as u32) < min {
        return Err(LoginError::PasswordTooShort(min));
    }
    let hash = hash_password(new_password.to_string()).await?;
    hub.store
        .update_user(name, |u| u.password_hash = Some(hash.clone()))?
        .ok_or(LoginError::BadCredentials)?;
    hub.store.flush().await?;
    Ok(())
}

/// Change a password after checking the current one.
pub async fn change_password(
    hub: &Hub,
    name: &str,
    current: &str,
    new_password: &str,
) -> Result<(), LoginError> {
    let user = hub.store.user(name)?.ok_or(LoginError::BadCredentials)?;
    let ok = match user.password_hash {
        Some(h) => verify_password(current.to_string(), h).await,
        None => false,
    };
    if !ok {
        return Err(LoginError::BadCredentials);
    }
    set_password(hub, name, new_password).await
}
