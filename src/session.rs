//! Browser sessions: the login cookie, the logged-in extractor, and CSRF tokens.
//!
//! The cookie `jupyterhub-hub-login` (path `<base_url>hub/`, HttpOnly, SameSite=Lax, Secure
//! under HTTPS) holds a random session id; the store keeps only its hash. Every form carries a
//! CSRF token derived from the session id, checked on POST. The login form, used before a
//! session exists, uses a double-submit cookie (`_xsrf`) instead.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;

use crate::hub::{Hub, Principal};
use crate::secrets;
use crate::state::{SessionRecord, StateError};

pub const LOGIN_COOKIE: &str = "jupyterhub-hub-login";
pub const XSRF_COOKIE: &str = "_xsrf";

/// Every value of cookie `name` in the request, in order.
fn cookie_values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .filter(move |(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The value of cookie `name` in the request, if present.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    cookie_values(headers, name)
        .next()
        .map(|v| v.trim_matches('"').to_string())
}

/// Whether the request came over HTTPS: the TLS listener or a trusted proxy says so in
/// `X-Forwarded-Proto` (from anyone else that header was removed: [`crate::scheme`]).
pub fn is_secure(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

fn cookie_attrs(path: &str, max_age: Option<i64>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    let age = max_age
        .map(|a| format!("; Max-Age={a}"))
        .unwrap_or_default();
    format!("; Path={path}; HttpOnly; SameSite=Lax{secure}{age}")
}

/// Start a session for `user`; returns the `Set-Cookie` value (`Secure` over HTTPS).
pub async fn create(hub: &Hub, user: &str, secure: bool) -> Result<String, StateError> {
    let id = secrets::new_token();
    let max_age = hub.config().auth.session_max_age.as_std().as_secs() as i64;
    let now = Utc::now();
    hub.store.put_session(&SessionRecord {
        hash: secrets::hash_token(&id),
        user: user.to_string(),
        created: now,
        expires_at: now + chrono::Duration::seconds(max_age),
    })?;
    hub.store.flush().await?;
    Ok(format!(
        "{LOGIN_COOKIE}={id}{}",
        cookie_attrs(&hub.hub_prefix(), Some(max_age), secure)
    ))
}

/// End the session in the request (if any); returns the `Set-Cookie` value that clears it.
pub async fn destroy(hub: &Hub, headers: &HeaderMap) -> Result<String, StateError> {
    if let Some(id) = cookie(headers, LOGIN_COOKIE) {
        hub.store.delete_session(&secrets::hash_token(&id))?;
        hub.store.flush().await?;
    }
    Ok(format!(
        "{LOGIN_COOKIE}={}",
        cookie_attrs(&hub.hub_prefix(), Some(0), is_secure(headers))
    ))
}

/// The logged-in principal of a browser request, if any. Two login cookies mean one was set by
/// someone else (a server's JavaScript can set a cookie for its parent domain with per-user
/// origins): then neither is believed, so a planted session never logs the browser in.
pub fn principal(hub: &Hub, headers: &HeaderMap) -> Option<Principal> {
    if cookie_values(headers, LOGIN_COOKIE).count() > 1 {
        return None;
    }
    let id = cookie(headers, LOGIN_COOKIE)?;
    hub.principal_for_session(&id).ok().flatten()
}

/// The CSRF token forms of this session must carry.
pub fn csrf_token(p: &Principal) -> String {
    p.session_id
        .as_deref()
        .map(|s| secrets::derive("csrf", s))
        .unwrap_or_default()
}

/// Check a submitted CSRF token against the session's.
pub fn csrf_ok(p: &Principal, submitted: &str) -> bool {
    let expected = csrf_token(p);
    !expected.is_empty() && secrets::constant_time_eq(&expected, submitted)
}

/// The pre-login double-submit value: the `_xsrf` cookie if present, else a new one to set.
pub fn login_xsrf(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, XSRF_COOKIE)
        .filter(|v| v.len() >= 32 && v.chars().all(|c| c.is_ascii_hexdigit()))
    {
        Some(v) => (v, false),
        None => (secrets::new_token(), true),
    }
}

pub fn xsrf_set_cookie(hub: &Hub, value: &str, secure: bool) -> String {
    format!(
        "{XSRF_COOKIE}={value}{}",
        cookie_attrs(&hub.hub_prefix(), None, secure)
    )
}

/// The cookie binding an OpenID login in progress to the browser that started it: the
/// callback must come from the same browser (no login CSRF), within the login's time.
pub const OIDC_STATE_COOKIE: &str = "orrery-oidc-state";

pub fn oidc_state_set_cookie(hub: &Hub, state: &str, secure: bool) -> String {
    let max_age = crate::providers::pending::PENDING_FOR.as_secs() as i64;
    format!(
        "{OIDC_STATE_COOKIE}={state}{}",
        cookie_attrs(&hub.hub_prefix(), Some(max_age), secure)
    )
}

pub fn oidc_state_clear_cookie(hub: &Hub, secure: bool) -> String {
    format!(
        "{OIDC_STATE_COOKIE}={}",
        cookie_attrs(&hub.hub_prefix(), Some(0), secure)
    )
}

/// Only same-site relative paths are accepted as `next` targets (no open redirects).
pub fn safe_next(hub: &Hub, next: Option<&str>) -> String {
    let cfg = hub.config();
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && n.starts_with(cfg.base_url.as_str()) =>
        {
            n.to_string()
        }
        _ => format!("{}home", hub.hub_prefix()),
    }
}

/// A page that needs a logged-in user: otherwise redirect to the login page with `next`.
pub struct LoggedIn(pub Principal);

impl FromRequestParts<Arc<Hub>> for LoggedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        hub: &Arc<Hub>,
    ) -> Result<Self, Self::Rejection> {
        match principal(hub, &parts.headers) {
            Some(p) => Ok(LoggedIn(p)),
            None => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let to = format!(
                    "{}login?next={}",
                    hub.hub_prefix(),
                    urlencoding::encode(next)
                );
                Err(Redirect::to(&to).into_response())
            }
        }
    }
}
