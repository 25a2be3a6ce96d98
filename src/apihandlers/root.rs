//! `GET /hub/api/` (version, no auth), `GET /hub/api/info`, and `GET /hub/api/user` (who am I).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::base::{ApiResult, Auth};
use super::models::user_model_for;
use super::JUPYTERHUB_API_VERSION;
use crate::hub::{Hub, PrincipalKind};

pub async fn version() -> Json<Value> {
    Json(json!({"version": JUPYTERHUB_API_VERSION}))
}

pub async fn info(State(hub): State<Arc<Hub>>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require_unfiltered("read:hub")?;
    let cfg = hub.config();
    Ok(Json(json!({
        "version": JUPYTERHUB_API_VERSION,
        "orrery": crate::version::version(),
        // The spec types both as strings; JupyterHub fills them from its Python.
        "python": format!("none: Orrery {} is a Rust program", crate::version::version()),
        "sys_executable": std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "orrery".to_string()),
        "spawner": {"class": format!("orrery.{}", hub.backend.name()), "version": crate::version::version()},
        "authenticator": {"class": format!("orrery.{}", cfg.auth.kind.as_str()), "version": crate::version::version()},
    })))
}

/// The caller's own model plus `scopes`, `session_id` and `token_id` (HubAuth needs `name`
/// and `scopes`).
pub async fn whoami(State(hub): State<Arc<Hub>>, Auth(p): Auth) -> ApiResult<Json<Value>> {
    let mut model = match &p.kind {
        PrincipalKind::User(u) => {
            user_model_for(&hub, &p, u).unwrap_or_else(|| json!({"kind": "user", "name": u.name}))
        }
        PrincipalKind::Service(s) => json!({"kind": "service", "name": s, "roles": []}),
        PrincipalKind::Control => json!({"kind": "service", "name": "orrery-cli", "roles": []}),
    };
    // The caller always learns its own name and kind.
    if let PrincipalKind::User(u) = &p.kind {
        model["kind"] = json!("user");
        model["name"] = json!(u.name);
    }
    // A single-user server checks `access:servers!server=<owner>/` or `!user=<owner>` in this
    // list and, as JupyterHub's HubAuth, cannot resolve a group: a group-filtered access scope
    // (a role's `access:servers!group=class-a`) also names the group's current members.
    let scopes = p
        .scopes
        .with_group_members("access:servers", &|g| hub.members_of(g));
    model["scopes"] = json!(scopes.to_strings());
    model["session_id"] = json!(p
        .session_id
        .as_ref()
        .map(|s| crate::secrets::derive("session-id", s)));
    model["token_id"] = json!(p.token_id);
    Ok(Json(model))
}
