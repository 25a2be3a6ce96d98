//! Orrery's own admin endpoints under `/hub/api/orrery/`: config reload for the
//! `orrery config reload` command (authenticated with the control token from the state dir).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;

use super::base::{ApiError, ApiResult, Auth};
use crate::hub::{Hub, PrincipalKind};
use crate::reload;

/// Only the local CLI (the control token) or an admin holding `scope` unfiltered; `what`
/// says what is refused.
pub(super) fn control_or_admin(
    auth: &Auth,
    scope: &str,
    what: &'static str,
) -> Result<(), ApiError> {
    if matches!(auth.0.kind, PrincipalKind::Control) || auth.0.scopes.has_unfiltered(scope) {
        Ok(())
    } else {
        Err(ApiError::forbidden(what))
    }
}

/// `GET /hub/api/orrery/gpus`: the GPU inventory (or why there is none), who holds which unit
/// (and for how long it has been idle), and the queue in its order. Admins and the local CLI.
pub async fn gpus(State(hub): State<Arc<Hub>>, auth: Auth) -> ApiResult<Json<Value>> {
    control_or_admin(
        &auth,
        "admin:servers",
        "the GPU inventory needs the control token or an admin",
    )?;
    let crate::gateway::queue::GpuSnapshot {
        inventory: probed,
        holders,
        queue,
        foreign,
    } = hub.gateway.gpu_snapshot().await;
    let (inventory, error) = match probed {
        Ok(inv) => (
            serde_json::to_value(inv).unwrap_or(Value::Null),
            Value::Null,
        ),
        Err(e) => (Value::Null, Value::String(e.to_string())),
    };
    let leases = serde_json::to_value(hub.store.leases()?).unwrap_or(Value::Null);
    Ok(Json(serde_json::json!({
        "inventory": inventory,
        "error": error,
        "leases": leases,
        "holders": holders,
        "queue": queue,
        "foreign": foreign,
    })))
}

/// `GET /hub/api/orrery/routes`: the proxy's route table (as configurable-http-proxy's
/// `GET /api/routes`): every server record's prefix and, when it is ready, its target. Admins
/// and the local CLI.
pub async fn routes(State(hub): State<Arc<Hub>>, auth: Auth) -> ApiResult<Json<Value>> {
    control_or_admin(
        &auth,
        "admin:servers",
        "the route table needs the control token or an admin",
    )?;
    let routes: Vec<Value> = hub
        .store
        .routes()
        .into_iter()
        .map(|(user, server, target)| {
            serde_json::json!({
                "prefix": hub.server_prefix(&user, &server),
                "user": user,
                "server": server,
                "target": target,
            })
        })
        .collect();
    Ok(Json(Value::Array(routes)))
}

/// `GET /hub/api/orrery/status`: the hub at a glance for `orrery status`: version,
/// listeners, the HTTPS certificate, users, servers, kernels and GPUs. Admins and the CLI.
pub async fn status(State(hub): State<Arc<Hub>>, auth: Auth) -> ApiResult<Json<Value>> {
    control_or_admin(
        &auth,
        "admin:servers",
        "the hub's status needs the control token or an admin",
    )?;
    let cfg = hub.config();
    let servers = hub.store.servers()?;
    let ready = servers.iter().filter(|s| s.ready).count();
    let kernels = hub.gateway.counts();
    let (holders, queue) = hub.gateway.gpu_view();
    let gpu_units = match crate::gpu::probe_off_thread(cfg.gpu.clone()).await {
        Ok(inv) => serde_json::json!(inv.schedulable().count()),
        Err(e) => Value::String(e.to_string()),
    };
    let https = cfg
        .https
        .enabled
        .then(|| format!("{}:{}", cfg.http.address, cfg.https.port));
    Ok(Json(serde_json::json!({
        "version": crate::version::version(),
        "listeners": {
            "http": format!("{}:{}", cfg.http.address, cfg.http.port),
            "https": https,
            "internal": hub.internal_api_base(),
        },
        "tls": cfg.https.enabled.then(|| hub.tls.status()),
        "users": hub.store.user_count(),
        "servers": {"ready": ready, "starting": servers.len() - ready},
        "kernels": {
            "running": kernels.running,
            "starting": kernels.starting,
            "reclaimed": kernels.reclaimed,
            "dead": kernels.dead,
        },
        "gpus": {"units": gpu_units, "leased": holders.len(), "waiting": queue.len()},
    })))
}

/// `GET /hub/api/orrery/tls`: the HTTPS certificate served (names, issuer, validity), where it
/// comes from, when it is renewed, and why the last attempt failed. Admins and the local CLI.
pub async fn tls(State(hub): State<Arc<Hub>>, auth: Auth) -> ApiResult<Json<Value>> {
    control_or_admin(
        &auth,
        "admin:servers",
        "the HTTPS status needs the control token or an admin",
    )?;
    let mut v = serde_json::to_value(hub.tls.status()).unwrap_or(Value::Null);
    v["enabled"] = Value::Bool(hub.config().https.enabled);
    Ok(Json(v))
}

/// `POST /hub/api/orrery/reload`: re-read the config file and apply it; answers what changed
/// and what needs a restart. Only the local CLI (control token) or an admin may call it.
pub async fn reload(State(hub): State<Arc<Hub>>, auth: Auth) -> ApiResult<Json<Value>> {
    control_or_admin(
        &auth,
        "admin:users",
        "reloading the configuration needs the control token or an admin",
    )?;
    match reload::reload(&hub).await {
        Ok(report) => Ok(Json(serde_json::to_value(report).unwrap_or(Value::Null))),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the configuration was not applied: {e}"),
        )),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    password: String,
}

/// `POST /hub/api/orrery/users/{name}/password`: an admin (or the CLI) sets a user's password.
pub async fn set_password(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    axum::extract::Path(name): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<axum::http::StatusCode> {
    auth.require_on_user(&hub, "admin:users", &name)?;
    let req: PasswordBody = super::base::parse_body(&body)?;
    match crate::auth::set_password(&hub, &name, &req.password).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(crate::auth::LoginError::BadCredentials) => {
            Err(ApiError::not_found(format!("No such user: {name}")))
        }
        Err(e) => Err(ApiError::bad_request(e.to_string())),
    }
}

/// `POST /hub/api/orrery/users/{name}/purge`: delete a *deleted* user's files (home volume).
/// Refused while the user exists, so files are only ever removed after an explicit delete.
pub async fn purge(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> ApiResult<Json<Value>> {
    auth.require_unfiltered("admin:users")?;
    let name =
        crate::username::normalize(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if hub.store.user(&name)?.is_some() {
        return Err(ApiError::bad_request(format!(
            "{name} still exists; delete the user first"
        )));
    }
    let cfg = hub.config();
    match hub.backend.purge_user_data(&name, &cfg).await {
        Ok(what) => {
            tracing::info!(user = %name, %what, "user data purged");
            Ok(Json(serde_json::json!({ "purged": what })))
        }
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        )),
    }
}

/// `GET /hub/api/orrery/state`: the whole state as a logical copy, for `orrery backup` while
/// the daemon runs (sled lets one process open the database). Only the local CLI: the copy
/// holds every password and token hash, which no API token, not even an admin's, may read.
pub async fn export_state(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
) -> ApiResult<Json<crate::state::StateExport>> {
    if !matches!(auth.0.kind, PrincipalKind::Control) {
        return Err(ApiError::forbidden(
            "the state copy is for `orrery backup` on this machine (the control token) only",
        ));
    }
    hub.store.flush().await?;
    let store = hub.store.clone();
    let copy = tokio::task::spawn_blocking(move || store.export())
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    tracing::info!(
        users = copy.count("users"),
        "state copied for a backup (orrery backup)"
    );
    Ok(Json(copy))
}
