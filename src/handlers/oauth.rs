//! Logging in at an OpenID Connect provider (`auth.type = "oidc"`) or GitHub
//! (`auth.type = "github"`), at JupyterHub OAuthenticator's paths: `<hub>/oauth_login` sends the browser to the provider (with a
//! cookie binding the login's `state` to this browser), `<hub>/oauth_callback` finishes it —
//! the state must match the cookie and be one this hub issued and never used, then the
//! provider's answer is checked ([`crate::providers::oidc`]) and the provider rules applied
//! ([`crate::auth::identity`]) before a session is made.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use super::forms::{ClientIp, Fields};
use super::layout;
use crate::auth::{identity, LoginError};
use crate::config::AuthType;
use crate::hub::Hub;
use crate::session;

fn not_here(hub: &Hub) -> Response {
    layout::error_page(
        hub,
        None,
        StatusCode::NOT_FOUND,
        "Not found",
        "This hub does not log in through an OpenID provider.",
    )
}

fn with_cookie(mut resp: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// `GET <hub>/oauth_login[?next=…]`: off to the provider's login page.
pub async fn login(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let cfg = hub.config();
    let q = Fields::query(query.as_deref());
    let next = session::safe_next(&hub, Some(q.get("next")).filter(|n| !n.is_empty()));
    let begun = match cfg.auth.kind {
        AuthType::Oidc => hub.oidc.begin(&cfg.auth.oidc, &next).await,
        AuthType::Github => hub.github.begin(&cfg.auth.github, &next),
        _ => return not_here(&hub),
    };
    match begun {
        Ok(begun) => with_cookie(
            layout::redirect(&begun.url),
            &session::oidc_state_set_cookie(&hub, &begun.state, session::is_secure(&headers)),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "OpenID login could not start");
            failed(&hub, LoginError::from(e))
        }
    }
}

/// The page for a login that did not happen: why, in words for the person; the cause is in
/// the log.
fn failed(hub: &Hub, e: LoginError) -> Response {
    let status = match &e {
        LoginError::Provider(_) => StatusCode::SERVICE_UNAVAILABLE,
        LoginError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        LoginError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::FORBIDDEN,
    };
    let message = match &e {
        LoginError::Internal(_) => {
            "The hub could not check your login; see the hub's log.".to_string()
        }
        other => other.to_string(),
    };
    layout::error_page(hub, None, status, "Login failed", &message)
}

/// `GET <hub>/oauth_callback?code=…&state=…`: the provider sends the browser back here.
pub async fn callback(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    ClientIp(ip): ClientIp,
    RawQuery(query): RawQuery,
) -> Response {
    let cfg = hub.config();
    if !cfg.auth.kind.is_redirect() {
        return not_here(&hub);
    }
    let secure = session::is_secure(&headers);
    let clear = session::oidc_state_clear_cookie(&hub, secure);
    let q = Fields::query(query.as_deref());
    let ip_key = ip.map(|ip| format!("ip:{ip}"));
    let (attempts, window) = (
        cfg.auth.rate_limit.attempts.saturating_mul(4),
        cfg.auth.rate_limit.window.as_std(),
    );
    if let Some(k) = &ip_key {
        if let Err(wait) = hub.limiter.check(k, attempts, window) {
            return with_cookie(failed(&hub, LoginError::RateLimited(wait)), &clear);
        }
    }
    let outcome = async {
        if !q.get("error").is_empty() {
            // The provider refused (the person cancelled, or is not allowed there).
            return Err(LoginError::NotAllowed(format!(
                "The provider did not log you in ({}{}).",
                q.get("error"),
                match q.get("error_description") {
                    "" => String::new(),
                    d => format!(": {d}"),
                }
            )));
        }
        let state = q.get("state");
        let cookie = session::cookie(&headers, session::OIDC_STATE_COOKIE).unwrap_or_default();
        if state.is_empty()
            || cookie.is_empty()
            || !crate::secrets::constant_time_eq(state, &cookie)
        {
            return Err(LoginError::Unverified(
                "login refused: the state is not the one this browser was given".into(),
            ));
        }
        let code = q.get("code");
        let (who, next) = if cfg.auth.kind == AuthType::Github {
            hub.github.finish(&cfg.auth.github, code, state).await?
        } else {
            hub.oidc.finish(&cfg.auth.oidc, code, state).await?
        };
        let policy = identity::Policy::of(&cfg.auth)
            .ok_or_else(|| LoginError::Internal("not an identity provider".into()))?;
        let user = identity::admit(&hub, &who, policy).await?;
        Ok((user, next))
    }
    .await;
    match outcome {
        Ok((user, next)) => with_cookie(
            super::login::logged_in(&hub, &user.name, secure, Some(&next)).await,
            &clear,
        ),
        Err(e) => {
            match &e {
                LoginError::Unverified(why) | LoginError::Provider(why) => {
                    tracing::warn!(error = %why, "OpenID login failed")
                }
                other => tracing::info!(error = %other, "OpenID login refused"),
            }
            if !matches!(e, LoginError::Provider(_)) {
                if let Some(k) = &ip_key {
                    hub.limiter.record_failure(k);
                }
            }
            hub.metrics.login(false);
            with_cookie(failed(&hub, e), &clear)
        }
    }
}
