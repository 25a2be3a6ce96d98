//! `/hub/api/users/{name}/tokens…`: create (shown once), list, get and revoke API tokens.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;

use super::base::{load_user, parse_body, ApiError, ApiResult, Auth};
use super::models::token_model;
use crate::hub::Hub;
use crate::scopes::{self, ScopeSet};
use crate::state::{TokenKind, TokenOwner};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewToken {
    /// Seconds; JupyterHub's spec types it as a number, so `3600.0` is as good as `3600`.
    expires_in: Option<f64>,
    note: Option<String>,
    scopes: Option<Vec<String>>,
    /// Deprecated in JupyterHub; accepted and ignored when empty.
    roles: Option<Vec<String>>,
}

pub async fn create(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let user = load_user(&hub, &name)?;
    auth.require_on_user(&hub, "tokens", &user.name)?;
    let req: NewToken = parse_body(&body)?;
    if req.roles.as_ref().is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::bad_request(
            "roles on tokens are not supported; ask for scopes instead",
        ));
    }
    let requested = req.scopes.unwrap_or_else(|| vec!["inherit".to_string()]);
    scopes::validate(&requested).map_err(|e| ApiError::bad_request(format!("{e}")))?;
    let owner_scopes = hub.user_scopes(&user);
    let asked = if requested.iter().any(|s| s == "inherit") {
        owner_scopes.clone()
    } else {
        ScopeSet::from_strings(&requested, Some(&user.name))
            .map_err(|e| ApiError::bad_request(e.to_string()))?
    };
    let groups_of = |u: &str| hub.groups_of(u);
    let missing = asked.not_held_by_resolving(&owner_scopes, &groups_of);
    if !missing.is_empty() {
        return Err(ApiError::forbidden(format!(
            "Not assigning requested scopes {} not held by {}",
            missing.join(", "),
            user.name
        )));
    }
    // A caller cannot mint a token stronger than its own credentials either.
    let beyond_caller = asked.not_held_by_resolving(&auth.0.scopes, &groups_of);
    if !beyond_caller.is_empty() && !auth.0.scopes.has_unfiltered("tokens") {
        return Err(ApiError::forbidden(format!(
            "Not assigning scopes you do not hold: {}",
            beyond_caller.join(", ")
        )));
    }
    let expires_at = match req.expires_in {
        None | Some(0.0) => None,
        // Up to ~100 years; beyond that a token might as well not expire, and chrono would
        // overflow.
        Some(s) if s > 0.0 && s <= 3.2e9 => {
            Some(Utc::now() + chrono::Duration::milliseconds((s * 1000.0) as i64))
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "expires_in must be a positive number of seconds (at most 3200000000), or 0 or null for no expiry",
            ))
        }
    };
    let note = req
        .note
        .unwrap_or_else(|| format!("Requested via API by {}", auth.0.name()));
    if note.len() > 1000 {
        return Err(ApiError::bad_request("note is longer than 1000 characters"));
    }
    let (token, rec) = hub.issue_token(
        TokenOwner::User(user.name.clone()),
        TokenKind::Api,
        requested,
        &note,
        expires_at,
    )?;
    hub.store.flush().await?;
    let mut model = token_model(&rec);
    model["token"] = Value::String(token);
    Ok((StatusCode::CREATED, Json(model)).into_response())
}

pub async fn list(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let user = load_user(&hub, &name)?;
    auth.require_on_user(&hub, "read:tokens", &user.name)?;
    let now = Utc::now();
    let tokens: Vec<Value> = hub
        .store
        .tokens_of(&TokenOwner::User(user.name.clone()))?
        .iter()
        .filter(|t| t.kind == TokenKind::Api && !t.is_expired(now))
        .map(token_model)
        .collect();
    Ok(Json(
        serde_json::json!({"api_tokens": tokens, "oauth_tokens": []}),
    ))
}

pub async fn get(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let user = load_user(&hub, &name)?;
    auth.require_on_user(&hub, "read:tokens", &user.name)?;
    hub.store
        .token_by_id(&TokenOwner::User(user.name.clone()), &id)?
        .map(|t| Json(token_model(&t)))
        .ok_or_else(|| ApiError::not_found(format!("No such token: {id}")))
}

pub async fn delete(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let user = load_user(&hub, &name)?;
    auth.require_on_user(&hub, "tokens", &user.name)?;
    let tok = hub
        .store
        .token_by_id(&TokenOwner::User(user.name.clone()), &id)?
        .ok_or_else(|| ApiError::not_found(format!("No such token: {id}")))?;
    hub.store.delete_token(&tok.hash)?;
    hub.store.flush().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
