//! JupyterHub 5's sharing API: `/shares/{owner}[/{server}]` (grant, list, revoke),
//! `/users/{name}/shared…` and `/groups/{name}/shared…` (what was shared with them, and
//! leaving a share), and `/share-codes/{owner}[/{server}]` (codes a guest redeems at
//! `<hub>/accept-share`). The rules live in [`crate::sharing`]; lists answer JupyterHub's
//! paginated form (`items`, `_pagination`) always, as JupyterHub does for these endpoints.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::base::{iso, iso_opt, paginate, parse_body, ApiError, ApiResult, Auth, PageParams};
use crate::hub::Hub;
use crate::scopes::Target;
use crate::secrets;
use crate::sharing::{self, SharingError};
use crate::state::{Grantee, ShareCodeRecord, ShareRecord};
use crate::username;

impl From<SharingError> for ApiError {
    fn from(e: SharingError) -> ApiError {
        match e {
            SharingError::SingleOrigin => ApiError::forbidden(e.to_string()),
            _ => ApiError::bad_request(e.to_string()),
        }
    }
}

/// The longest a share code may live.
const CODE_MAX_SECS: i64 = 365 * 24 * 3600;

/// A route's `{name}`, `{owner}` and `{server}` (absent for the default server, whose routes
/// end in `/`).
fn param(params: &[(String, String)], key: &str) -> String {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

fn normalized(name: &str) -> ApiResult<String> {
    username::normalize(name).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Require `scope` on `owner`'s server `server` (a server filter, the owner's user and group
/// filters all match). Without any share scope on it, the owner is reported missing.
fn require_on_server(
    hub: &Hub,
    auth: &Auth,
    scope: &str,
    owner: &str,
    server: &str,
) -> ApiResult<()> {
    let groups = hub.groups_of(owner);
    let full = format!("{owner}/{server}");
    let target = Target {
        user: Some(owner),
        server: Some(&full),
        groups: &groups,
        service: None,
    };
    if auth.0.scopes.allows(scope, &target) {
        return Ok(());
    }
    if auth.0.scopes.allows("read:shares", &target)
        || auth.0.scopes.allows("read:users:name", &target)
    {
        return Err(ApiError::forbidden(format!(
            "Action is not authorized with current scopes; requires {scope}"
        )));
    }
    Err(ApiError::not_found(format!("No such user: {owner}")))
}

/// The owner (must exist) and, for a named server, that it exists (running, starting or
/// started before).
fn load_server(hub: &Hub, owner: &str, server: &str) -> ApiResult<String> {
    let owner = normalized(owner)?;
    let user = hub
        .store
        .user(&owner)?
        .ok_or_else(|| ApiError::not_found(format!("No such user: {owner}")))?;
    if !server.is_empty()
        && hub.store.server(&owner, server)?.is_none()
        && !user.server_options.contains_key(server)
    {
        return Err(ApiError::not_found(format!(
            "No such server: {owner}/{server}"
        )));
    }
    Ok(owner)
}

fn shared_server_model(hub: &Hub, owner: &str, server: &str) -> Value {
    let ready = hub
        .store
        .server(owner, server)
        .ok()
        .flatten()
        .is_some_and(|s| s.ready && s.pending.is_none());
    let url = hub.server_location(owner, server);
    let full_url = if hub.origins().is_some() {
        Value::from(url.clone())
    } else {
        Value::Null
    };
    json!({"name": server, "user": {"name": owner}, "url": url, "full_url": full_url, "ready": ready})
}

pub fn share_model(hub: &Hub, s: &ShareRecord) -> Value {
    let (user, group) = match &s.grantee {
        Grantee::User(n) => (json!({"name": n}), Value::Null),
        Grantee::Group(n) => (Value::Null, json!({"name": n})),
    };
    json!({
        "server": shared_server_model(hub, &s.owner, &s.server),
        "scopes": s.scopes,
        "user": user,
        "group": group,
        "created_at": iso(&s.created_at),
    })
}

fn code_model(hub: &Hub, c: &ShareCodeRecord) -> Value {
    json!({
        "server": shared_server_model(hub, &c.owner, &c.server),
        "scopes": c.scopes,
        "id": c.id,
        "created_at": iso(&c.created_at),
        "expires_at": iso_opt(&c.expires_at),
        "exchange_count": c.exchange_count,
        "last_exchanged_at": iso_opt(&c.last_exchanged_at),
    })
}

/// JupyterHub's paginated envelope, always.
fn envelope(
    items: Vec<Value>,
    page: &PageParams,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
) -> Response {
    let mut headers = headers.clone();
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/jupyterhub-pagination+json"),
    );
    paginate(items, page, &headers, uri)
}

/// `GET /shares/{owner}`: the shares of all of owner's servers.
pub async fn list_owner(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path(owner): Path<String>,
    Query(page): Query<PageParams>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Response> {
    let owner = normalized(&owner)?;
    auth.require_on_user(&hub, "read:shares", &owner)?;
    let items = hub
        .store
        .shares_of_owner(&owner)?
        .iter()
        .map(|s| share_model(&hub, s))
        .collect();
    Ok(envelope(items, &page, &headers, &uri))
}

/// `GET /shares/{owner}/{server}`.
pub async fn list_server(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path(params): Path<Vec<(String, String)>>,
    Query(page): Query<PageParams>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Response> {
    let (owner, server) = (
        normalized(&param(&params, "owner"))?,
        param(&params, "server"),
    );
    require_on_server(&hub, &auth, "read:shares", &owner, &server)?;
    let owner = load_server(&hub, &owner, &server)?;
    let items = hub
        .store
        .shares_of_server(&owner, &server)?
        .iter()
        .map(|s| share_model(&hub, s))
        .collect();
    Ok(envelope(items, &page, &headers, &uri))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareBody {
    user: Option<String>,
    group: Option<String>,
    scopes: Option<Vec<String>>,
}

/// The grantee a body names, which must exist (and not be the owner).
fn body_grantee(hub: &Hub, owner: &str, b: &ShareBody) -> ApiResult<Grantee> {
    match sharing::grantee(b.user.as_deref(), b.group.as_deref())? {
        Grantee::User(u) => {
            let u = normalized(&u)?;
            if u == owner {
                return Err(SharingError::Owner(u).into());
            }
            if hub.store.user(&u)?.is_none() {
                return Err(ApiError::bad_request(format!("No such user: {u}")));
            }
            Ok(Grantee::User(u))
        }
        Grantee::Group(g) => {
            if hub.store.group(&g)?.is_none() {
                return Err(ApiError::bad_request(format!("No such group: {g}")));
            }
            Ok(Grantee::Group(g))
        }
    }
}

/// `POST /shares/{owner}/{server}`: grant (or widen) a user's or group's access.
pub async fn grant(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path(params): Path<Vec<(String, String)>>,
    body: Bytes,
) -> ApiResult<Response> {
    let (owner, server) = (
        normalized(&param(&params, "owner"))?,
        param(&params, "server"),
    );
    require_on_server(&hub, &auth, "shares", &owner, &server)?;
    let b: ShareBody = parse_body(&body)?;
    sharing::allowed(&hub.config())?;
    let owner = load_server(&hub, &owner, &server)?;
    let grantee = body_grantee(&hub, &owner, &b)?;
    let scopes = sharing::checked_scopes(&owner, &server, b.scopes.as_deref())?;
    let existing = hub.store.share(&owner, &server, &grantee)?;
    let share = sharing::widened(existing, &owner, &server, grantee, &scopes);
    hub.store.put_share(&share)?;
    hub.store.flush().await?;
    tracing::info!(owner = %owner, server = %server, grantee = ?share.grantee, "server shared");
    Ok(Json(share_model(&hub, &share)).into_response())
}

/// `PATCH /shares/{owner}/{server}`: revoke some scopes (or all) of one grantee.
pub async fn revoke(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path(params): Path<Vec<(String, String)>>,
    body: Bytes,
) -> ApiResult<Response> {
    let (owner, server) = (
        normalized(&param(&params, "owner"))?,
        param(&params, "server"),
    );
    require_on_server(&hub, &auth, "shares", &owner, &server)?;
    let b: ShareBody = parse_body(&body)?;
    let owner = load_server(&hub, &owner, &server)?;
    let grantee = match sharing::grantee(b.user.as_deref(), b.group.as_deref())? {
        Grantee::User(u) => Grantee::User(normalized(&u)?),
        g => g,
    };
    let Some(mut share) = hub.store.share(&owner, &server, &grantee)? else {
        // Revoking what is not held is not an error (JupyterHub).
        return Ok(Json(json!({})).into_response());
    };
    let remaining = match b.scopes.as_deref().filter(|s| !s.is_empty()) {
        None => Vec::new(),
        Some(revoked) => {
            let revoked = sharing::checked_scopes(&owner, &server, Some(revoked))?;
            share.scopes.retain(|s| !revoked.contains(s));
            share.scopes.clone()
        }
    };
    let answer = if remaining.is_empty() {
        hub.store.delete_share(&owner, &server, &grantee)?;
        json!({})
    } else {
        hub.store.put_share(&share)?;
        share_model(&hub, &share)
    };
    hub.store.flush().await?;
    tracing::info!(owner = %owner, server = %server, grantee = ?grantee, "share revoked");
    hub.enforce_access(&owner, &server);
    Ok(Json(answer).into_response())
}

/// `DELETE /shares/{owner}/{server}`: revoke every share of the server.
pub async fn revoke_all(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path(params): Path<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let (owner, server) = (
        normalized(&param(&params, "owner"))?,
        param(&params, "server"),
    );
    require_on_server(&hub, &auth, "shares", &owner, &server)?;
    let owner = load_server(&hub, &owner, &server)?;
    let gone = hub.store.delete_shares_of_server(&owner, &server)?;
    hub.store.flush().await?;
    tracing::info!(owner = %owner, server = %server, revoked = gone.len(), "all shares revoked");
    hub.enforce_access(&owner, &server);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Grantee resources (`/users/{name}/shared`, `/groups/{name}/shared`): the scope checks.
fn require_on_grantee(hub: &Hub, auth: &Auth, g: &Grantee, write: bool) -> ApiResult<()> {
    match g {
        Grantee::User(u) => {
            let scope = if write {
                "users:shares"
            } else {
                "read:users:shares"
            };
            auth.require_on_user(hub, scope, u)
        }
        Grantee::Group(name) => {
            let scope = if write {
                "groups:shares"
            } else {
                "read:groups:shares"
            };
            let names = [name.clone()];
            let target = Target {
                groups: &names,
                ..Default::default()
            };
            if !auth.0.scopes.allows(scope, &target) {
                return Err(ApiError::not_found(format!("No such group: {name}")));
            }
            if hub.store.group(name)?.is_none() {
                return Err(ApiError::not_found(format!("No such group: {name}")));
            }
            Ok(())
        }
    }
}

/// The grantee of `/users/{name}/shared…` or `/groups/{name}/shared…` (told apart by the path).
fn grantee_of(hub: &Hub, uri: &axum::http::Uri, params: &[(String, String)]) -> ApiResult<Grantee> {
    let name = param(params, "name");
    if uri
        .path()
        .starts_with(&format!("{}api/groups/", hub.hub_prefix()))
    {
        Ok(Grantee::Group(name))
    } else {
        Ok(Grantee::User(normalized(&name)?))
    }
}

fn grantee_name(g: &Grantee) -> &str {
    match g {
        Grantee::User(n) | Grantee::Group(n) => n,
    }
}

/// `GET /users/{name}/shared` and `GET /groups/{name}/shared`.
pub async fn list_shared_with(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path(params): Path<Vec<(String, String)>>,
    Query(page): Query<PageParams>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Response> {
    let g = grantee_of(&hub, &uri, &params)?;
    require_on_grantee(&hub, &auth, &g, false)?;
    let items = hub
        .store
        .shares_for(&g)?
        .iter()
        .map(|s| share_model(&hub, s))
        .collect();
    Ok(envelope(items, &page, &headers, &uri))
}

/// `GET /{users|groups}/{name}/shared/{owner}/{server}` (the default server: `…/{owner}/`).
pub async fn get_shared_with(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path(params): Path<Vec<(String, String)>>,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Response> {
    let g = grantee_of(&hub, &uri, &params)?;
    require_on_grantee(&hub, &auth, &g, false)?;
    let (owner, server) = (
        normalized(&param(&params, "owner"))?,
        param(&params, "server"),
    );
    let share = hub.store.share(&owner, &server, &g)?.ok_or_else(|| {
        ApiError::not_found(format!(
            "No share of {owner}/{server} with {}",
            grantee_name(&g)
        ))
    })?;
    Ok(Json(share_model(&hub, &share)).into_response())
}

/// `DELETE /{users|groups}/{name}/shared/{owner}/{server}`: leave a share.
pub async fn leave(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path(params): Path<Vec<(String, String)>>,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Response> {
    let g = grantee_of(&hub, &uri, &params)?;
    require_on_grantee(&hub, &auth, &g, true)?;
    let (owner, server) = (
        normalized(&param(&params, "owner"))?,
        param(&params, "server"),
    );
    if !hub.store.delete_share(&owner, &server, &g)? {
        return Err(ApiError::not_found(format!(
            "No share of {owner}/{server} with {}",
            grantee_name(&g)
        )));
    }
    hub.store.flush().await?;
    hub.enforce_access(&owner, &server);
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CodeBody {
    expires_in: Option<f64>,
    scopes: Option<Vec<String>>,
}

/// `POST /share-codes/{owner}/{server}`: a code anyone logged in can redeem until it expires.
pub async fn issue_code(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path(params): Path<Vec<(String, String)>>,
    body: Bytes,
) -> ApiResult<Response> {
    let (owner, server) = (
        normalized(&param(&params, "owner"))?,
        param(&params, "server"),
    );
    require_on_server(&hub, &auth, "shares", &owner, &server)?;
    let b: CodeBody = if body.is_empty() {
        CodeBody::default()
    } else {
        parse_body(&body)?
    };
    let cfg = hub.config();
    sharing::allowed(&cfg)?;
    let owner = load_server(&hub, &owner, &server)?;
    let secs = match b.expires_in {
        None => cfg.sharing.code_max_age.as_std().as_secs() as i64,
        Some(s) if s.is_finite() && s >= 1.0 && s <= CODE_MAX_SECS as f64 => s as i64,
        Some(s) => {
            return Err(ApiError::bad_request(format!(
                "expires_in {s} is out of range: give seconds from 1 to {CODE_MAX_SECS} (a year)"
            )))
        }
    };
    let scopes = sharing::checked_scopes(&owner, &server, b.scopes.as_deref())?;
    let (code, rec) = sharing::new_code(&owner, &server, scopes, secs);
    hub.store.put_share_code(&rec)?;
    hub.store.flush().await?;
    let accept_url = format!("{}accept-share?code={code}", hub.hub_prefix());
    let mut model = code_model(&hub, &rec);
    model["code"] = Value::from(code);
    model["full_accept_url"] = match hub.origins() {
        Some(o) => Value::from(format!("{}{accept_url}", o.hub_origin())),
        None => Value::Null,
    };
    model["accept_url"] = Value::from(accept_url);
    tracing::info!(owner = %owner, server = %server, id = %rec.id, "share code issued");
    Ok(Json(model).into_response())
}

/// `GET /share-codes/{owner}` and `GET /share-codes/{owner}/{server}`.
pub async fn list_codes(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path(params): Path<Vec<(String, String)>>,
    Query(page): Query<PageParams>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Response> {
    let owner = normalized(&param(&params, "owner"))?;
    // `/share-codes/{owner}` lists all of the owner's codes; `/share-codes/{owner}/` the
    // default server's.
    let server = (uri.path().ends_with('/') || params.iter().any(|(k, _)| k == "server"))
        .then(|| param(&params, "server"));
    match &server {
        Some(s) => require_on_server(&hub, &auth, "read:shares", &owner, s)?,
        None => auth.require_on_user(&hub, "read:shares", &owner)?,
    }
    let items = hub
        .store
        .share_codes_of(&owner, server.as_deref())?
        .iter()
        .map(|c| code_model(&hub, c))
        .collect();
    Ok(envelope(items, &page, &headers, &uri))
}

#[derive(Debug, Deserialize)]
pub struct CodeQuery {
    code: Option<String>,
    id: Option<String>,
}

/// `DELETE /share-codes/{owner}/{server}?code=…|id=…`.
pub async fn revoke_code(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path(params): Path<Vec<(String, String)>>,
    Query(q): Query<CodeQuery>,
) -> ApiResult<Response> {
    let (owner, server) = (
        normalized(&param(&params, "owner"))?,
        param(&params, "server"),
    );
    require_on_server(&hub, &auth, "shares", &owner, &server)?;
    let codes = hub.store.share_codes_of(&owner, Some(&server))?;
    let found = match (q.code.as_deref(), q.id.as_deref()) {
        (Some(code), None) => {
            let hash = secrets::hash_token(code);
            codes.into_iter().find(|c| c.hash == hash)
        }
        (None, Some(id)) => codes.into_iter().find(|c| c.id == id),
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of ?code= and ?id= to say which share code to revoke",
            ))
        }
    };
    let code = found.ok_or_else(|| ApiError::not_found("No such share code"))?;
    hub.store.delete_share_code(&code.hash)?;
    hub.store.flush().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
