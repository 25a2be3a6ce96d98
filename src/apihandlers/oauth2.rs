//! The OAuth2 provider single-user servers (and OAuth services) log users in through.
//!
//! `GET /hub/api/oauth2/authorize` needs the hub login cookie; for a user's own server it skips
//! the consent page and redirects to the client's registered `redirect_uri` (compared exactly)
//! with a single-use code valid for [`CODE_TTL_SECS`]. `POST /hub/api/oauth2/token` swaps the code
//! (with the client secret, i.e. the server's API token) for an access token carrying the
//! client's access scopes, narrowed to what the user holds.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use base64::Engine;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use crate::hub::Hub;
use crate::scopes::ScopeSet;
use crate::secrets;
use crate::session;
use crate::state::{OAuthCodeRecord, TokenKind, TokenOwner};

/// Codes expire quickly: the browser follows the redirect at once.
pub const CODE_TTL_SECS: i64 = 300;

#[derive(Debug, Deserialize)]
pub struct AuthorizeParams {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    state: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: impl Into<String>) -> Response {
    (status, Json(json!({"error": error, "error_description": description.into(), "status": status.as_u16(), "message": ""})))
        .into_response()
}

pub async fn authorize(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Query(q): Query<AuthorizeParams>,
) -> Response {
    let Some(p) = session::principal(&hub, &headers) else {
        let next = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        return Redirect::to(&format!(
            "{}login?next={}",
            hub.hub_prefix(),
            urlencoding::encode(next)
        ))
        .into_response();
    };
    let Some(user) = p.user().cloned() else {
        return oauth_error(
            StatusCode::FORBIDDEN,
            "access_denied",
            "only users can authorize clients",
        );
    };
    let Some(client_id) = q.client_id.filter(|c| !c.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "missing client_id",
        );
    };
    let client = match hub.store.oauth_client(&client_id) {
        Ok(Some(c)) => c,
        Ok(None) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                format!("unknown client {client_id}; is the server running?"),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "state error");
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "state database error",
            );
        }
    };
    if q.response_type.as_deref() != Some("code") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_response_type",
            "response_type must be \"code\"",
        );
    }
    let redirect_uri = q
        .redirect_uri
        .unwrap_or_else(|| client.redirect_uri.clone());
    if redirect_uri != client.redirect_uri {
        // Never redirect to an unregistered URI: that would leak the code.
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "redirect_uri does not match the client's registered redirect_uri",
        );
    }
    // Issue only what both the client may carry and the user holds: a user authorising someone
    // else's server gets a token that identifies them but grants no access.
    let requested =
        ScopeSet::from_strings(&client.access_scopes, Some(&user.name)).unwrap_or_default();
    // A group filter the user holds (a role's `access:servers!group=class-a`) covers the
    // servers of the group's members.
    let mut scopes = requested
        .intersect_resolving(&hub.user_scopes(&user), &|u| hub.groups_of(u))
        .to_strings();
    scopes.push(format!("read:users:name!user={}", user.name));
    scopes.sort();
    scopes.dedup();
    let code = secrets::new_token();
    let rec = OAuthCodeRecord {
        hash: secrets::hash_token(&code),
        client_id: client.id.clone(),
        user: user.name.clone(),
        redirect_uri: redirect_uri.clone(),
        scopes,
        expires_at: Utc::now() + chrono::Duration::seconds(CODE_TTL_SECS),
    };
    if let Err(e) = hub.store.put_oauth_code(&rec) {
        tracing::error!(error = %e, "state error");
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "state database error",
        );
    }
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    let mut target = format!("{redirect_uri}{sep}code={code}");
    if let Some(s) = q.state {
        target.push_str(&format!("&state={}", urlencoding::encode(&s)));
    }
    tracing::info!(user = %user.name, client = %client.id, "oauth code issued");
    Redirect::to(&target).into_response()
}

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (id, secret) = s.split_once(':')?;
    Some((
        urlencoding::decode(id).ok()?.into_owned(),
        urlencoding::decode(secret).ok()?.into_owned(),
    ))
}

pub async fn token(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Form(f): Form<TokenForm>,
) -> Response {
    if f.grant_type.as_deref() != Some("authorization_code") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be authorization_code",
        );
    }
    let (client_id, secret) = match (
        f.client_id.clone(),
        f.client_secret.clone(),
        basic_credentials(&headers),
    ) {
        (Some(id), Some(s), _) => (id, s),
        (_, _, Some((id, s))) => (id, s),
        _ => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client credentials missing",
            )
        }
    };
    let client = match hub.store.oauth_client(&client_id) {
        Ok(Some(c)) if secrets::constant_time_eq(&c.secret_hash, &secrets::hash_token(&secret)) => {
            c
        }
        Ok(_) => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "unknown client or wrong secret",
            )
        }
        Err(_) => {
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "state database error",
            )
        }
    };
    let Some(code) = f.code.filter(|c| !c.is_empty()) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "missing code");
    };
    // Taking the code removes it, so a replayed code fails even if this request fails later.
    let rec = match hub.store.take_oauth_code(&secrets::hash_token(&code)) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "unknown or already used code",
            )
        }
        Err(_) => {
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "state database error",
            )
        }
    };
    if rec.client_id != client.id {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "code was issued to another client",
        );
    }
    if rec.expires_at <= Utc::now() {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "code expired");
    }
    if f.redirect_uri
        .as_deref()
        .is_some_and(|r| r != rec.redirect_uri)
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "redirect_uri does not match the authorization request",
        );
    }
    match hub.store.user(&rec.user) {
        Ok(Some(_)) => {}
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "the user no longer exists",
            )
        }
    }
    let expires_in = hub.config().auth.session_max_age.as_std().as_secs() as i64;
    let issued = hub.issue_token(
        TokenOwner::User(rec.user.clone()),
        TokenKind::OAuth,
        rec.scopes.clone(),
        &format!("OAuth token for {}", client.id),
        Some(Utc::now() + chrono::Duration::seconds(expires_in)),
    );
    let (token, mut trec) = match issued {
        Ok(t) => t,
        Err(_) => {
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "state database error",
            )
        }
    };
    trec.oauth_client = Some(client.id.clone());
    if hub.store.put_token(&trec).is_err() || hub.store.flush().await.is_err() {
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "state database error",
        );
    }
    Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": rec.scopes.join(" "),
    }))
    .into_response()
}
