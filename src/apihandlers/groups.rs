//! `/hub/api/groups…`: list, create, read, delete groups and change their members. Groups the
//! config manages (`[[groups]]`) are read like any other, and changing them is refused with a
//! 409 that says how to change them in the config.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use super::base::{
    page_bounds, page_response, paginate, parse_body, ApiError, ApiResult, Auth, PageParams,
};
use super::models::group_model;
use crate::groups;
use crate::hub::Hub;
use crate::scopes::Target;
use crate::state::{GroupRecord, ManagedBy};
use crate::username;

fn valid_group_name(name: &str) -> ApiResult<String> {
    // Group names follow the user-name rules, or the wider rule of providers' groups (which
    // the LDAP authenticator's group sync creates): they appear in filters and URLs.
    username::group_name(name).map_err(ApiError::bad_request)
}

/// Group resources match `!group=<name>` filters.
fn group_target(names: &[String]) -> Target<'_> {
    Target {
        groups: names,
        ..Default::default()
    }
}

pub async fn list(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Query(page): Query<PageParams>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Response> {
    auth.require_any("list:groups")?;
    // A caller who may read every group: the store pages them by name and keeps their count.
    if auth.0.scopes.has_unfiltered("read:groups") {
        let total = hub.store.group_count();
        let (offset, limit) = page_bounds(&page, &headers, total);
        let items = hub
            .store
            .groups_page(offset, limit)?
            .iter()
            .map(|g| group_model(&hub, g))
            .collect();
        return Ok(page_response(items, total, offset, limit, &headers, &uri));
    }
    // A filtered `read:groups` (`!group=…`) sees the groups its filters name: every group is
    // read and filtered (a full scan, kept for these callers, who see a few groups).
    let mut groups = hub.store.groups()?;
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    let items: Vec<Value> = groups
        .iter()
        .filter(|g| {
            let names = [g.name.clone()];
            auth.0.scopes.allows("read:groups", &group_target(&names))
        })
        .map(|g| group_model(&hub, g))
        .collect();
    Ok(paginate(items, &page, &headers, &uri))
}

fn load(hub: &Hub, auth: &Auth, name: &str, scope: &str) -> ApiResult<GroupRecord> {
    let names = [name.to_string()];
    let visible = auth
        .0
        .scopes
        .allows("read:groups:name", &group_target(&names));
    let g = hub
        .store
        .group(name)?
        .filter(|_| visible)
        .ok_or_else(|| ApiError::not_found(format!("No such group: {name}")))?;
    if !auth.0.scopes.allows(scope, &group_target(&names)) {
        return Err(ApiError::forbidden(format!(
            "Action is not authorized with current scopes; requires {scope}"
        )));
    }
    Ok(g)
}

pub async fn get(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(group_model(
        &hub,
        &load(&hub, &auth, &name, "read:groups")?,
    )))
}

#[derive(Debug, Deserialize, Default)]
struct NewGroup {
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    properties: serde_json::Map<String, Value>,
}

pub async fn create(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    auth.require_unfiltered("admin:groups")?;
    let name = valid_group_name(&name)?;
    let req: NewGroup = parse_body(&body)?;
    if hub.store.group(&name)?.is_some() {
        return Err(ApiError::conflict(format!("Group {name} already exists")));
    }
    if groups::config_managed(None, &hub.config(), &name) {
        return Err(ApiError::conflict(groups::refusal(&name)));
    }
    let users = existing_users(&hub, &req.users)?;
    let g = GroupRecord {
        name,
        users,
        properties: req.properties,
        managed_by: ManagedBy::Api,
    };
    hub.store.put_group(&g)?;
    hub.store.flush().await?;
    Ok((StatusCode::CREATED, Json(group_model(&hub, &g))).into_response())
}

fn existing_users(hub: &Hub, raw: &[String]) -> ApiResult<std::collections::BTreeSet<String>> {
    let mut out = std::collections::BTreeSet::new();
    for r in raw {
        let n = username::normalize(r).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if hub.store.user(&n)?.is_none() {
            return Err(ApiError::bad_request(format!("No such user: {n}")));
        }
        out.insert(n);
    }
    Ok(out)
}

pub async fn delete(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let g = load(&hub, &auth, &name, "delete:groups")?;
    refuse_if_config_managed(&hub, &g)?;
    hub.store.delete_group(&name)?;
    hub.store.flush().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Members {
    users: Vec<String>,
}

pub async fn add_users(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let mut g = load(&hub, &auth, &name, "groups")?;
    let req: Members = parse_body(&body)?;
    refuse_if_config_managed(&hub, &g)?;
    g.users.extend(existing_users(&hub, &req.users)?);
    hub.store.put_group(&g)?;
    hub.store.flush().await?;
    Ok(Json(group_model(&hub, &g)))
}

pub async fn remove_users(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let mut g = load(&hub, &auth, &name, "groups")?;
    let req: Members = parse_body(&body)?;
    refuse_if_config_managed(&hub, &g)?;
    for r in &req.users {
        let n = username::normalize(r).map_err(|e| ApiError::bad_request(e.to_string()))?;
        g.users.remove(&n);
    }
    hub.store.put_group(&g)?;
    hub.store.flush().await?;
    Ok(Json(group_model(&hub, &g)))
}

/// A 409 for a change to a group the config manages, saying how to make it there.
fn refuse_if_config_managed(hub: &Hub, g: &GroupRecord) -> ApiResult<()> {
    if groups::config_managed(Some(g), &hub.config(), &g.name) {
        return Err(ApiError::conflict(groups::refusal(&g.name)));
    }
    Ok(())
}
