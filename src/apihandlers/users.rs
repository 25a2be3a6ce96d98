//! `/hub/api/users…`: list, create, read, modify and delete users, and their activity.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::base::{
    load_user, page_bounds, page_response, paginate_with, parse_body, parse_time, ApiError,
    ApiResult, Auth, PageParams,
};
use super::models::user_model_for;
use crate::hub::Hub;
use crate::spawn;
use crate::state::{UserOrder, UserQuery, UserRecord, UserState};
use crate::username;

#[derive(Debug, Deserialize, Default)]
pub struct ListParams {
    pub state: Option<String>,
    pub sort: Option<String>,
    pub name_filter: Option<String>,
    #[serde(default)]
    pub include_stopped_servers: Option<String>,
    // Not `#[serde(flatten)] PageParams`: flattening loses the query string's number parsing.
    pub offset: Option<usize>,
    pub limit: Option<usize>,
}

pub async fn list(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Query(params): Query<ListParams>,
    headers: HeaderMap,
    // The nested router strips the prefix from `Uri`; `next` links need the full path.
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Response> {
    auth.require_any("list:users")?;
    let page = PageParams {
        offset: params.offset,
        limit: params.limit,
    };
    let state = params.state.as_deref().unwrap_or("");
    let state = UserState::parse(state).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unrecognized state filter {state:?}: use one of active, ready, inactive"
        ))
    })?;
    let sort = params.sort.as_deref().unwrap_or("id");
    let order = UserOrder::parse(sort).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unrecognized sort {sort:?}: use name, -name, last_activity or -last_activity"
        ))
    })?;
    let query = UserQuery {
        prefix: params.name_filter.as_deref().unwrap_or(""),
        order,
        state,
    };
    // A caller who sees every user: the store walks the index for this order and state,
    // counts from its kept counts, and decodes the page only.
    if auth.0.scopes.has_unfiltered("list:users") {
        let total = hub.store.count_users(&query)?;
        let (offset, limit) = page_bounds(&page, &headers, total);
        let users = hub.store.users_page(&query, offset, limit)?;
        let models = users
            .iter()
            .filter_map(|u| user_model_for(&hub, &auth.0, u))
            .collect();
        return Ok(page_response(models, total, offset, limit, &headers, &uri));
    }
    // A filtered `list:users` (`!group=…`) sees some users only, decided per user from their
    // groups, which no index orders: every user of the list is read in the store's order and
    // filtered (a full scan, kept for these callers: a group's TAs, not the hub's admins).
    let mut users = hub.store.users_page(&query, 0, usize::MAX)?;
    users.retain(|u| {
        let groups = hub.groups_of(&u.name);
        auth.0
            .scopes
            .allows("list:users", &crate::scopes::Target::user(&u.name, &groups))
    });
    // Models for the page only.
    Ok(paginate_with(users, &page, &headers, &uri, |u| {
        user_model_for(&hub, &auth.0, &u)
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateMany {
    usernames: Vec<String>,
    #[serde(default)]
    admin: bool,
}

/// `POST /users {"usernames": [...], "admin": bool}` → 201 with the created models.
pub async fn create_many(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    body: Bytes,
) -> ApiResult<Response> {
    auth.require_unfiltered("admin:users")?;
    let req: CreateMany = parse_body(&body)?;
    if req.usernames.is_empty() {
        return Err(ApiError::bad_request("usernames must not be empty"));
    }
    let mut names = Vec::new();
    for raw in &req.usernames {
        let name = username::normalize(raw).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if hub.config().users.blocked.contains(&name) {
            return Err(ApiError::bad_request(format!(
                "user {name} is blocked (users.blocked)"
            )));
        }
        names.push(name);
    }
    let mut created = Vec::new();
    for name in &names {
        if hub.store.user(name)?.is_some() {
            continue;
        }
        let mut rec = UserRecord::new(name);
        rec.admin = req.admin;
        if hub.store.create_user(&rec)? {
            created.push(rec);
        }
    }
    if created.is_empty() {
        return Err(ApiError::conflict(format!(
            "all of {} already exist",
            names.join(", ")
        )));
    }
    hub.store.flush().await?;
    tracing::info!(by = auth.0.name(), users = ?created.iter().map(|u| &u.name).collect::<Vec<_>>(), "users created");
    let models: Vec<Value> = created
        .iter()
        .filter_map(|u| user_model_for(&hub, &auth.0, u))
        .collect();
    Ok((StatusCode::CREATED, Json(models)).into_response())
}

pub async fn get(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let user = load_user(&hub, &name)?;
    user_model_for(&hub, &auth.0, &user)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("No such user: {name}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOne {
    #[serde(default)]
    admin: bool,
}

/// `POST /users/{name}` → 201.
pub async fn create_one(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    auth.require_unfiltered("admin:users")?;
    let req: CreateOne = parse_body(&body)?;
    let name = username::normalize(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if hub.config().users.blocked.contains(&name) {
        return Err(ApiError::bad_request(format!(
            "user {name} is blocked (users.blocked)"
        )));
    }
    let mut rec = UserRecord::new(&name);
    rec.admin = req.admin;
    if !hub.store.create_user(&rec)? {
        return Err(ApiError::conflict(format!("User {name} already exists")));
    }
    hub.store.flush().await?;
    let model = user_model_for(&hub, &auth.0, &rec).unwrap_or(Value::Null);
    Ok((StatusCode::CREATED, Json(model)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    name: Option<String>,
    admin: Option<bool>,
}

/// `PATCH /users/{name}`: change `admin` (and, for admins, rename).
pub async fn patch(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let user = load_user(&hub, &name)?;
    auth.require_on_user(&hub, "admin:users", &user.name)?;
    let req: Patch = parse_body(&body)?;
    if let Some(new) = &req.name {
        let new = username::normalize(new).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if new != user.name {
            return Err(ApiError::bad_request(
                "renaming users is not supported: their containers, volumes and tokens are named after them; create a new user instead",
            ));
        }
    }
    let updated = hub
        .store
        .update_user(&user.name, |u| {
            if let Some(a) = req.admin {
                u.admin = a;
            }
        })?
        .ok_or_else(|| ApiError::not_found(format!("No such user: {name}")))?;
    hub.store.flush().await?;
    Ok(Json(
        user_model_for(&hub, &auth.0, &updated).unwrap_or(Value::Null),
    ))
}

/// `DELETE /users/{name}` → 204. A running server is stopped first; the home volume is kept.
pub async fn delete(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let user = load_user(&hub, &name)?;
    auth.require_on_user(&hub, "delete:users", &user.name)?;
    if let Some(u) = auth.0.user() {
        if u.name == user.name {
            return Err(ApiError::bad_request("you cannot delete yourself"));
        }
    }
    for s in hub.store.servers_of(&user.name)? {
        if s.pending.is_some() {
            return Err(ApiError::bad_request(format!(
                "{}'s server is {}ing; try again when it has finished",
                user.name,
                s.pending.unwrap_or_default()
            )));
        }
        spawn::stop(&hub, &user.name, &s.name)
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    }
    hub.store.delete_user(&user.name)?;
    hub.store.flush().await?;
    tracing::info!(by = auth.0.name(), user = %user.name, "user deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
struct ActivityServer {
    last_activity: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Activity {
    last_activity: Option<String>,
    #[serde(default)]
    servers: std::collections::BTreeMap<String, ActivityServer>,
}

/// `POST /users/{name}/activity`: servers report activity; timestamps only move forward.
pub async fn activity(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let user = load_user(&hub, &name)?;
    auth.require_on_user(&hub, "users:activity", &user.name)?;
    let req: Activity = parse_body(&body)?;
    for (server, act) in &req.servers {
        if hub.store.server(&user.name, server)?.is_none() {
            return Err(ApiError::bad_request(format!(
                "No such server '{server}' for user {}",
                user.name
            )));
        }
        if let Some(ts) = &act.last_activity {
            let t = parse_time(ts)?;
            hub.record_activity(&user.name, Some(server), t)?;
        }
    }
    if let Some(ts) = &req.last_activity {
        hub.record_activity(&user.name, None, parse_time(ts)?)?;
    }
    Ok(Json(json!({})).into_response())
}
