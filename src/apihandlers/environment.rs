//! `/hub/api/orrery/environment`: the software environment's record, for `orrery env` while
//! the daemon runs (it holds the state database). Images are built by the command, on this
//! machine; the daemon only records the result, so the record changes with one request and a
//! failed build never reaches it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use super::base::{parse_body, ApiError, ApiResult, Auth};
use super::orrery::control_or_admin;
use crate::hub::{Hub, PrincipalKind};
use crate::state::{Expected, Generation, StateError};

/// Only the local CLI changes the environment: a generation names the images every new
/// server and kernel runs, which is root's choice on this machine, not an API token's.
fn control_only(auth: &Auth) -> Result<(), ApiError> {
    if matches!(auth.0.kind, PrincipalKind::Control) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "the software environment is changed with `orrery env` on the hub's machine",
        ))
    }
}

fn conflict_or_state(e: StateError) -> ApiError {
    match e {
        StateError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
        e => e.into(),
    }
}

/// `GET`: every generation, the one in effect, and the base images the config uses now.
pub async fn show(State(hub): State<Arc<Hub>>, auth: Auth) -> ApiResult<Json<Value>> {
    control_or_admin(
        &auth,
        "admin:servers",
        "the software environment needs the control token or an admin",
    )?;
    let record = hub.store.environment()?;
    Ok(Json(serde_json::json!({
        "record": record,
        "bases": crate::environment::bases_in_use(&hub.config()),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitBody {
    /// What the command read before building: a commit made meanwhile is not overwritten.
    expected: Expected,
    generation: Generation,
}

/// `POST`: record a new generation and put it in effect; 409 if the record changed since the
/// command read it.
pub async fn commit(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    control_only(&auth)?;
    let req: CommitBody = parse_body(&body)?;
    let record = hub
        .store
        .commit_generation(req.expected, req.generation)
        .map_err(conflict_or_state)?;
    let current = record.current_generation();
    tracing::info!(
        generation = current.map(|g| g.id),
        change = current.map(|g| g.change.as_str()),
        "software environment changed (orrery env)"
    );
    Ok((StatusCode::CREATED, Json(serde_json::json!(record))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrunedBody {
    generations: Vec<u64>,
}

/// `POST …/pruned`: generations whose derived images were removed.
pub async fn pruned(
    State(hub): State<Arc<Hub>>,
    auth: Auth,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    control_only(&auth)?;
    let req: PrunedBody = parse_body(&body)?;
    let record = hub
        .store
        .mark_pruned(&req.generations)
        .map_err(conflict_or_state)?;
    Ok(Json(serde_json::json!(record)))
}
