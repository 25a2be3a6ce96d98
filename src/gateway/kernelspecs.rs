//! `GET /api/kernelspecs`, `GET /api/kernelspecs/{name}` and `GET /kernelspecs/{name}/{resource}`,
//! from `[[kernels.specs]]` as the configuration is *now* (a reload takes effect at once).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::auth::GatewayUser;
use super::{Gateway, GatewayError};
use crate::config::KernelSpec;

/// Whether `user` may see and start `spec`.
pub fn allowed(spec: &KernelSpec, user: &GatewayUser) -> bool {
    if spec.allowed_users.is_empty() && spec.allowed_groups.is_empty() {
        return true;
    }
    spec.allowed_users
        .iter()
        .any(|u| u.eq_ignore_ascii_case(&user.name))
        || spec
            .allowed_groups
            .iter()
            .any(|g| user.groups.iter().any(|ug| ug == g))
}

/// The specs `user` may use, in config order.
pub fn specs_for(gw: &Gateway, user: &GatewayUser) -> Vec<KernelSpec> {
    gw.services
        .config
        .get()
        .kernels
        .effective_specs()
        .into_iter()
        .filter(|s| allowed(s, user))
        .collect()
}

fn model(spec: &KernelSpec) -> Value {
    json!({
        "name": spec.name,
        "spec": {
            "argv": spec.argv,
            "display_name": spec.display_name,
            "language": spec.language,
            "env": spec.env,
            "interrupt_mode": spec.interrupt_mode.as_str(),
            "metadata": {},
        },
        "resources": {},
    })
}

pub async fn list(State(gw): State<Arc<Gateway>>, user: GatewayUser) -> Json<Value> {
    let specs = specs_for(&gw, &user);
    let default = specs.first().map(|s| s.name.clone()).unwrap_or_default();
    let map: serde_json::Map<String, Value> =
        specs.iter().map(|s| (s.name.clone(), model(s))).collect();
    Json(json!({"default": default, "kernelspecs": map}))
}

pub async fn one(
    State(gw): State<Arc<Gateway>>,
    user: GatewayUser,
    Path(name): Path<String>,
) -> Result<Json<Value>, GatewayError> {
    specs_for(&gw, &user)
        .iter()
        .find(|s| s.name == name)
        .map(|s| Json(model(s)))
        .ok_or_else(|| GatewayError::NoSuchSpec(format!("no kernelspec {name:?}")))
}

/// Kernelspec resources (logos): none are served.
pub async fn resource(
    _user: GatewayUser,
    Path((name, resource)): Path<(String, String)>,
) -> Response {
    GatewayError::NoSuchSpec(format!("kernelspec {name:?} has no resource {resource:?}"))
        .into_response()
}
