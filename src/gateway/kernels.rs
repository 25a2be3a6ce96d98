//! `/api/kernels`: create (201 at once, `starting`), list, get, delete, interrupt, restart.
//! A user's token never sees another user's kernels: they are 404, like unknown ids.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::auth::GatewayUser;
use super::kernelspecs::specs_for;
use super::manager::Kernel;
use super::{Gateway, GatewayError};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CreateBody {
    pub name: Option<String>,
    pub env: Map<String, Value>,
}

fn kernel(gw: &Gateway, user: &GatewayUser, id: &str) -> Result<Arc<Kernel>, GatewayError> {
    gw.kernel_of(&user.name, id)
        .filter(|k| k.server == user.server)
        .ok_or_else(|| GatewayError::NoSuchKernel(id.to_string()))
}

pub async fn create(
    State(gw): State<Arc<Gateway>>,
    user: GatewayUser,
    body: Option<Json<CreateBody>>,
) -> Result<Response, GatewayError> {
    if !gw.services.config.get().kernels.remote {
        return Err(GatewayError::Disabled);
    }
    let most = gw.services.config.get().kernels.max_per_user as usize;
    let have = gw.kernels_of(&user.name).len();
    if most > 0 && have >= most {
        return Err(GatewayError::TooManyKernels { have, most });
    }
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let specs = specs_for(&gw, &user);
    let spec = match body.name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => specs
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| GatewayError::NoSuchSpec(format!("No such kernel named {name}")))?,
        None => specs
            .into_iter()
            .next()
            .ok_or_else(|| GatewayError::NoSuchSpec("no kernelspec is available to you".into()))?,
    };
    let k = gw.create(&user.name, &user.server, spec, &body.env)?;
    tracing::info!(kernel = %k.id, user = %user.name, spec = %k.spec.name, "kernel requested");
    let location = format!("/api/kernels/{}", k.id);
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::LOCATION, location)],
        Json(k.model()),
    )
        .into_response())
}

pub async fn list(State(gw): State<Arc<Gateway>>, user: GatewayUser) -> Json<Value> {
    Json(Value::Array(
        gw.kernels_of_server(&user.name, &user.server)
            .iter()
            .map(|k| k.model())
            .collect(),
    ))
}

pub async fn get_one(
    State(gw): State<Arc<Gateway>>,
    user: GatewayUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, GatewayError> {
    Ok(Json(kernel(&gw, &user, &id)?.model()))
}

pub async fn delete(
    State(gw): State<Arc<Gateway>>,
    user: GatewayUser,
    Path(id): Path<String>,
) -> Result<StatusCode, GatewayError> {
    let k = kernel(&gw, &user, &id)?;
    gw.delete(&k).await;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn interrupt(
    State(gw): State<Arc<Gateway>>,
    user: GatewayUser,
    Path(id): Path<String>,
) -> Result<StatusCode, GatewayError> {
    let k = kernel(&gw, &user, &id)?;
    gw.interrupt(&k).await.map_err(GatewayError::Kernel)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn restart(
    State(gw): State<Arc<Gateway>>,
    user: GatewayUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, GatewayError> {
    let k = kernel(&gw, &user, &id)?;
    // The restart runs on its own task: Jupyter Server gives up on a request after 42 s, and a
    // slow image must not turn into "restart failed" while the kernel is in fact coming up. Past
    // RESTART_ANSWER the answer is the model as it is (`starting`); the client polls it.
    let task = {
        let (gw, k) = (gw.clone(), k.clone());
        tokio::spawn(async move { gw.restart(&k).await })
    };
    match tokio::time::timeout(RESTART_ANSWER, task).await {
        Ok(Ok(Err(m))) => return Err(GatewayError::Kernel(m)),
        Ok(Err(e)) => return Err(GatewayError::Kernel(format!("the restart failed: {e}"))),
        Ok(Ok(Ok(()))) | Err(_) => {}
    }
    Ok(Json(k.model()))
}

/// How long a restart request waits for the kernel before answering with its current model.
const RESTART_ANSWER: std::time::Duration = std::time::Duration::from_secs(30);
